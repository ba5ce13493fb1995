-- migrate:up
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  product_id INTEGER NOT NULL REFERENCES products(id),
  quantity INTEGER NOT NULL DEFAULT 1,
  placed_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX orders_customer_idx ON orders(customer_id);

-- migrate:down
DROP TABLE orders;
