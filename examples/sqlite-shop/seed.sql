-- Seed data the demo loads after the first migrations, so the snapshot and the
-- restore have real rows to protect.
INSERT INTO customers (email, name) VALUES
  ('ada@example.com', 'Ada Lovelace'),
  ('alan@example.com', 'Alan Turing'),
  ('grace@example.com', 'Grace Hopper');
INSERT INTO products (sku, title, price_cents) VALUES
  ('BK-001', 'The Art of Computer Programming', 19900),
  ('BK-002', 'Structure and Interpretation of Computer Programs', 4500),
  ('MUG-01', 'Mug: "It works on my machine"', 1200);
INSERT INTO orders (customer_id, product_id, quantity) VALUES
  (1, 1, 1), (2, 2, 2), (3, 3, 4), (1, 3, 1);
