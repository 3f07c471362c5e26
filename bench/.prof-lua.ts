import { Redis } from 'ioredis';
import { HASH_SCRIPT } from '/work/main/connectors/redis/scripts.ts';
const redis = new Redis();
const filler = 'lorem ipsum dolor sit amet '.repeat(30).slice(0, 700);
async function stats() { const s = await redis.info('commandstats'); const out: Record<string, number> = {}; for (const l of s.split('\n')) { const m = /^cmdstat_(\w+):calls=(\d+),usec=(\d+)/.exec(l); if (m) out[m[1]!] = Number(m[3]); } return out; }
const variants: Record<string, string> = { current: HASH_SCRIPT };
variants['hsetonly'] = `local out = {} local a = 3 for i = 1, #KEYS / 2 do local n = tonumber(ARGV[a+2]) redis.call('HSET', KEYS[2*i-1], '__cdc_position', ARGV[a+1], unpack(ARGV, a+3, a+2+n)) a = a + 4 + n out[i] = 1 end return out`;
const loop = (body: string) => `local out = {} local a = 3 for i = 1, #KEYS / 2 do local key, tomb = KEYS[2*i-1], KEYS[2*i] local pos = ARGV[a+1] local n = tonumber(ARGV[a+2]) local first = a + 3 ${body} a = a + 4 + n out[i] = 1 end return out`;
variants['A_hget_get_hset'] = loop(`local cur = redis.call('HGET', key, '__cdc_position') local dead = redis.call('GET', tomb) redis.call('HSET', key, '__cdc_position', pos, unpack(ARGV, first, first + n - 1))`);
variants['B_plus_del'] = loop(`local cur = redis.call('HGET', key, '__cdc_position') local dead = redis.call('GET', tomb) redis.call('DEL', key) redis.call('HSET', key, '__cdc_position', pos, unpack(ARGV, first, first + n - 1))`);
variants['C_plus_pcall'] = loop(`pcall(function() local cur = redis.call('HGET', key, '__cdc_position') local dead = redis.call('GET', tomb) redis.call('DEL', key) redis.call('HSET', key, '__cdc_position', pos, unpack(ARGV, first, first + n - 1)) end)`);
variants['D_table'] = loop(`local cur = redis.call('HGET', key, '__cdc_position') local dead = redis.call('GET', tomb) redis.call('DEL', key) local args = {key, '__cdc_position', pos} for j = first, first + n - 1 do args[#args+1] = ARGV[j] end redis.call('HSET', unpack(args))`);
variants['noop'] = `local out = {} for i = 1, #KEYS / 2 do out[i] = 1 end return out`;
for (const [name, lua] of Object.entries(variants)) {
  const sha = await redis.script('LOAD', lua) as string;
  let total = 0;
  for (let round = 0; round < 3; round++) {
    const before = await stats();
    const pipe = redis.pipeline();
    for (let c = 0; c < 50; c++) {
      const keys: string[] = []; const argv: (string|number)[] = [0, 604800];
      for (let r = 0; r < 200; r++) {
        const id = `cdc-prof-lua:${name}:${round}:${c}:${r}`;
        keys.push(id, `cdc-prof-lua:__cdc:tomb:${id}`);
        argv.push('u', '00000000000003e8', 18, 'id', String(r), 'customer', 'c-1', 'email', 'u@x.com', 'status', 'pending', 'quantity', '3', 'price', '12.25', 'created_at', '2024-05-01T12:34:56.123456', 'tags', '["a","b"]', 'description', filler, 0);
      }
      pipe.evalsha(sha, keys.length, ...keys, ...argv);
    }
    const t0 = performance.now();
    await pipe.exec();
    const wall = performance.now() - t0;
    const after = await stats();
    total += after['evalsha']! - before['evalsha']!;
    if (round === 2) console.log(name, 'server us/row', (total / 3 / 10000).toFixed(2), 'wall ms', wall.toFixed(0));
  }
}
let cursor = '0'; do { const [n, keys] = await redis.scan(cursor, 'MATCH', 'cdc-prof-lua:*', 'COUNT', 5000); cursor = n; if (keys.length) await redis.unlink(...keys); } while (cursor !== '0');
redis.disconnect();
