-- A few rows for Debezium's initial snapshot (op "r"). Idempotent: existing rows are left alone.
--   bash scripts/source-pg.sh psql -f scripts/sql/shop.sql -f scripts/sql/shop-seed.sql
INSERT INTO public.customers (id, email, full_name, birth_date, vip, created_at) VALUES
  (1, 'ada@example.com', 'Ada Lovelace', '1815-12-10', true, '2024-01-02T03:04:05.123456Z'),
  (2, 'alan@example.com', 'Alan Turing', '1912-06-23', false, '2024-02-03T04:05:06Z')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.products (id, sku, name, price, attributes, updated_at) VALUES
  (1, 'KB-01', 'Keyboard', 49.90, '{"color": "black", "layout": "us"}', '2024-01-01T00:00:00Z'),
  (2, 'MS-01', 'Mouse', 19.99, NULL, '2024-01-01T00:00:00Z')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.orders (id, customer_id, status, total, ordered_at) VALUES
  (1, 1, 'paid', 69.89, '2024-03-01T12:00:00Z')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.order_lines (order_id, line_no, product_id, quantity, unit_price) VALUES
  (1, 1, 1, 1, 49.90),
  (1, 2, 2, 1, 19.99)
ON CONFLICT (order_id, line_no) DO NOTHING;

-- Explicit ids above: move the sequences past them so later inserts do not collide.
DO $$
BEGIN
  PERFORM setval('public.customers_id_seq', greatest((SELECT max(id) FROM public.customers), 1));
  PERFORM setval('public.products_id_seq', greatest((SELECT max(id) FROM public.products), 1));
  PERFORM setval('public.orders_id_seq', greatest((SELECT max(id) FROM public.orders), 1));
END
$$;
