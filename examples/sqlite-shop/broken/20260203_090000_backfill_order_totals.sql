-- migrate:up
-- Deliberately broken: the column is misspelled, so the third of three
-- pending migrations fails after the first two have committed.
-- safe-migrate restores the snapshot taken before the run.
ALTER TABLE orders ADD COLUMN total_cents INTEGER;
UPDATE orders SET total_cents = quantity * (SELECT price_cent FROM products p WHERE p.id = orders.product_id);

-- migrate:down
ALTER TABLE orders DROP COLUMN total_cents;
