-- migrate:up
-- Deliberately broken, in a way no linter can see: the flat 25.00 discount
-- drives the mug's price below zero, so the CHECK (price_cents >= 0) fails at
-- run time -- after the first two pending migrations have committed.
-- safe-migrate restores the snapshot taken before the run.
ALTER TABLE orders ADD COLUMN total_cents INTEGER;
UPDATE products SET price_cents = price_cents - 2500;
UPDATE orders SET total_cents = quantity * (SELECT price_cents FROM products p WHERE p.id = orders.product_id);

-- migrate:down
ALTER TABLE orders DROP COLUMN total_cents;
