// A light live workload on the example shop source database, until stopped: new customers and
// products, orders with lines in one transaction, price changes, status updates, cancellations.
import pg from 'pg';

const url = process.env['SOURCE_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5433/shop';
const perSecond = Number(process.env['SHOP_RATE'] ?? '5');
const client = new pg.Client({ connectionString: url });
await client.connect();
let running = true;
const stop = () => (running = false);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const pick = (n: number) => 1 + Math.floor(Math.random() * n);
async function count(table: string): Promise<number> {
  const r = await client.query<{ n: string }>(`SELECT coalesce(max(id), 0) AS n FROM public.${table}`);
  return Number(r.rows[0]?.n ?? 0);
}

for (let tick = 0; running; tick++) {
  try {
    if (tick % 10 === 0 || (await count('customers')) < 5) {
      await client.query(
        `INSERT INTO public.customers (email, full_name, birth_date, vip) VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING`,
        [`User${Date.now()}@Example.com`, `Customer ${tick}`, '1990-05-17', tick % 7 === 0],
      );
    }
    if (tick % 15 === 0 || (await count('products')) < 5) {
      await client.query(`INSERT INTO public.products (sku, name, price, attributes) VALUES ($1, $2, $3, $4) ON CONFLICT (sku) DO NOTHING`, [
        `SKU-${Date.now()}`,
        `Product ${tick}`,
        (Math.random() * 100).toFixed(2),
        JSON.stringify({ color: ['red', 'green', 'blue'][tick % 3], weight_g: pick(900) }),
      ]);
    }
    const [customers, products] = [await count('customers'), await count('products')];
    await client.query('BEGIN');
    const order = await client.query<{ id: string }>(
      `INSERT INTO public.orders (customer_id, status) SELECT id, 'new' FROM public.customers ORDER BY random() LIMIT 1 RETURNING id`,
    );
    const orderId = order.rows[0]?.id;
    if (orderId) {
      const lines = pick(3);
      for (let line = 1; line <= lines; line++) {
        await client.query(
          `INSERT INTO public.order_lines (order_id, line_no, product_id, quantity, unit_price)
           SELECT $1, $2, id, $3, price FROM public.products WHERE id >= $4 ORDER BY id LIMIT 1`,
          [orderId, line, pick(4), pick(products)],
        );
      }
      await client.query(
        `UPDATE public.orders SET total = (SELECT coalesce(sum(quantity * unit_price), 0) FROM public.order_lines WHERE order_id = $1) WHERE id = $1`,
        [orderId],
      );
    }
    await client.query('COMMIT');
    if (tick % 3 === 0) await client.query(`UPDATE public.products SET price = price * 1.01, updated_at = now() WHERE id = $1`, [pick(products)]);
    if (tick % 4 === 0) await client.query(`UPDATE public.orders SET status = 'shipped' WHERE status = 'new' AND id % 4 = $1`, [tick % 4]);
    if (tick % 9 === 0) await client.query(`DELETE FROM public.orders WHERE status = 'new' AND id = (SELECT min(id) FROM public.orders WHERE status = 'new')`);
    if (tick % 11 === 0) await client.query(`UPDATE public.customers SET vip = NOT vip WHERE id = $1`, [pick(customers)]);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    console.error(`workload: ${String(err)}`);
  }
  await new Promise((r) => setTimeout(r, 1000 / perSecond));
}
await client.end();
