-- migrate:up
ALTER TABLE orders ADD COLUMN notes TEXT;

-- migrate:down
ALTER TABLE orders DROP COLUMN notes;
