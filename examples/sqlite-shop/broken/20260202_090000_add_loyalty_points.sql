-- migrate:up
ALTER TABLE customers ADD COLUMN loyalty_points INTEGER NOT NULL DEFAULT 0;
UPDATE customers SET loyalty_points = 10 * (SELECT count(*) FROM orders o WHERE o.customer_id = customers.id);

-- migrate:down
ALTER TABLE customers DROP COLUMN loyalty_points;
