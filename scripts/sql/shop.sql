-- Example source schema for the Debezium PostgreSQL connector (connectors/debezium/shop-postgres.json).
-- Idempotent: safe to apply again. Apply with
--   bash scripts/source-pg.sh psql -f scripts/sql/shop.sql
-- Covers the types the decoder must handle: numeric(12,2) (decimal.handling.mode precise -> Connect
-- Decimal, base64 bytes), timestamptz (ZonedTimestamp string), date (days since epoch), boolean,
-- jsonb (io.debezium.data.Json string), text, a composite primary key (order_lines).

SET client_min_messages = warning;

CREATE TABLE IF NOT EXISTS public.customers (
  id          bigserial PRIMARY KEY,
  email       text NOT NULL UNIQUE,
  full_name   text NOT NULL,
  birth_date  date,
  vip         boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.products (
  id          bigserial PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  name        text NOT NULL,
  price       numeric(12,2) NOT NULL,
  attributes  jsonb,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.orders (
  id           bigserial PRIMARY KEY,
  customer_id  bigint NOT NULL REFERENCES public.customers (id),
  status       text NOT NULL DEFAULT 'new',
  total        numeric(12,2) NOT NULL DEFAULT 0,
  ordered_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.order_lines (
  order_id    bigint NOT NULL REFERENCES public.orders (id) ON DELETE CASCADE,
  line_no     integer NOT NULL,
  product_id  bigint NOT NULL REFERENCES public.products (id),
  quantity    integer NOT NULL CHECK (quantity > 0),
  unit_price  numeric(12,2) NOT NULL,
  PRIMARY KEY (order_id, line_no)
);

-- Full before-images on update/delete for the tables whose changes the router diffs. customers keeps
-- REPLICA IDENTITY DEFAULT (before = key only on delete, no before on update) so both shapes occur.
ALTER TABLE public.products REPLICA IDENTITY FULL;
ALTER TABLE public.orders REPLICA IDENTITY FULL;
ALTER TABLE public.order_lines REPLICA IDENTITY FULL;
