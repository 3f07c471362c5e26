/**
 * The Lua scripts that apply a chunk of coalesced changes atomically per row, with the stale-write
 * guard running inside Redis so that no other writer can slip between the check and the write.
 *
 * Call shape (both modes): KEYS = row key, tombstone key, table watermark key, for each row
 * (KEYS_PER_ROW). ARGV[1] = ttl seconds (0 =
 * none), ARGV[2] = tombstone retention seconds, then per row:
 *   hash: 'u', position, 2n, field1, value1, … fieldn, valuen, m, unavailable1, … unavailablem
 *   json: 'u', position, json, m, unavailable1, … unavailablem  (names JSON-encoded, quotes included)
 *   both: 'd', position
 * A row not newer than its table's truncate watermark (MARK_SCRIPT) is stale too: a replay from
 * before a truncate must not bring back what the truncate removed.
 * Returns one entry per row: 1 written, 0 stale (ignored), or 'E<error reply>' for a row whose
 * key could not be read (WRONGTYPE…), so one bad key does not fail the others. A failed write
 * fails the whole call; the sink then runs that call's rows one by one to find the culprit.
 *
 * Positions are encodePosition() strings and compare with Lua's `<=`. Lua compares with strcoll,
 * which for same-shape lowercase hex strings ('.' only between fixed-width groups) agrees with
 * byte order in any locale.
 */

export const KEYS_PER_ROW = 3;
/** The hash field, and the JSON value's first member, holding a row's position. */
export const POSITION_FIELD = '__cdc_position';
const JSON_POS_PATTERN = `^{"${POSITION_FIELD}":"([^"]*)"`;

/** Shared by both scripts: the call's header, read before the functions that use it. */
const HEADER = String.raw`
local ttl = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
-- Redis refuses a script's first write under maxmemory only if that command is one that may grow
-- memory (DEL is not); after any write it lets the script run on. So each script's first write
-- is such a command, and OOM fails the call instead of being ignored.
local wrote = false
-- Truncate watermarks read so far in this call, by key (false: none).
local marks = {}
`;

/**
 * Shared by both scripts: reading a row's stored state. Reads use redis.pcall, so a key of the
 * wrong type fails its row only; writes use redis.call: they fail for reasons that concern the
 * whole server (OOM, READONLY…), and then the whole call fails.
 */
const READ = String.raw`
local function read(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then return nil, 'E' .. r.err end
  return r
end

-- True when pos is not newer than the table's last truncate (or the error reply).
local function truncated(wkey, pos)
  local mark = marks[wkey]
  if mark == nil then
    local err
    mark, err = read('GET', wkey)
    if err then return nil, err end
    marks[wkey] = mark
  end
  return mark and pos <= mark, nil
end
`;

/** Shared by both scripts: walks the rows, one status each. */
const RUN = String.raw`
local out = {}
local a = 3
for i = 1, #KEYS / ${KEYS_PER_ROW} do
  local op, pos = ARGV[a], ARGV[a + 1]
  local first, count, u0, nu = 0, 0, 0, 0
  a = a + 2
  if op == 'u' then
    a, first, count, u0, nu = parse(a)
  end
  local k = ${KEYS_PER_ROW} * (i - 1)
  local old, err = truncated(KEYS[k + 3], pos)
  if err then out[i] = err
  elseif old then out[i] = 0
  else out[i] = apply(KEYS[k + 1], KEYS[k + 2], op, pos, first, count, u0, nu) end
end
return out
`;

export const HASH_SCRIPT = String.raw`${HEADER}${READ}local POS = '${POSITION_FIELD}'
-- unpack() is limited by Lua's C stack (8000 values): wide rows are written in slices (even, so
-- that field/value pairs stay together).
local SLICE = 4000

-- A 'u' row's arguments from a: n, n field/value entries, m, m unavailable field names. Returns
-- the next row's index, first field index, n, first unavailable index, m.
local function parse(a)
  local n = tonumber(ARGV[a])
  local m = tonumber(ARGV[a + 1 + n])
  return a + 2 + n + m, a + 1, n, a + 2 + n, m
end

local function apply(key, tomb, op, pos, first, count, u0, nu)
  local cur, err = read('HGET', key, POS)
  if err then return err end
  -- While a row written here exists there is no tombstone (writes remove it, deletes remove the
  -- row), so only an absent row needs the tombstone check.
  local dead = false
  if not cur then
    dead, err = read('GET', tomb)
    if err then return err end
  end
  if (cur and pos <= cur) or (dead and pos <= dead) then return 0 end
  if op == 'd' then
    redis.call('SET', tomb, pos, 'EX', retention)
    redis.call('DEL', key)
    wrote = true
    return 1
  end
  local kept
  if nu > 0 then
    -- Unchanged TOAST columns keep their stored value (absent stays absent).
    kept = redis.call('HMGET', key, unpack(ARGV, u0, u0 + nu - 1))
  end
  if not wrote then
    -- The script's first write must be refusable under OOM (see the header); DEL below undoes it.
    redis.call('HSET', key, POS, '')
    wrote = true
  end
  -- The row replaces the hash: columns now null or dropped must not linger.
  redis.call('DEL', key)
  local last = first + count - 1
  for s = first, last, SLICE do redis.call('HSET', key, unpack(ARGV, s, math.min(s + SLICE - 1, last))) end
  if kept then
    for j = 1, nu do
      if kept[j] then redis.call('HSET', key, ARGV[u0 + j - 1], kept[j]) end
    end
  end
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  -- The position goes last: a row whose write failed halfway (the whole call fails, and its rows
  -- are then run one by one) has none, so running it again rewrites it instead of skipping it.
  redis.call('HSET', key, POS, pos)
  if dead then redis.call('DEL', tomb) end
  return 1
end
${RUN}`;

export const JSON_SCRIPT = String.raw`${HEADER}${READ}-- The row's JSON starts with "__cdc_position": reading the stored position needs no decoding.
local POS_PATTERN = '${JSON_POS_PATTERN}'

-- A 'u' row's arguments from a: json, m, m unavailable names (see the hash script's parse).
local function parse(a)
  local m = tonumber(ARGV[a + 1])
  return a + 2 + m, a, 1, a + 2, m
end

local function skipString(s, i)
  local j = i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then error('unterminated string') end
    if string.byte(s, k) == 92 then j = k + 2 else return k + 1 end
  end
end

local function skipValue(s, i)
  local c = string.byte(s, i)
  if c == 34 then return skipString(s, i) end
  if c == 123 or c == 91 then
    local depth, j = 0, i
    while true do
      local k = string.find(s, '[%[%]{}"]', j)
      if not k then error('unterminated value') end
      local b = string.byte(s, k)
      if b == 34 then
        j = skipString(s, k)
      else
        j = k + 1
        if b == 123 or b == 91 then depth = depth + 1 else depth = depth - 1 end
        if depth == 0 then return j end
      end
    end
  end
  local k = string.find(s, '[,}%]]', i)
  if not k then error('unterminated scalar') end
  return k
end

-- Top-level members of a JSON object as JSON.stringify writes it (no whitespace): encoded name
-- (quotes included) -> raw value text. Raw text, not cjson: cjson would round big integers to 14
-- digits and turn [] into {}; copying the stored bytes keeps the value exactly.
local function members(s)
  local found = {}
  local i = 2
  while string.byte(s, i) == 34 do
    local e = skipString(s, i)
    local v = e + 1
    local after = skipValue(s, v)
    found[string.sub(s, i, e - 1)] = string.sub(s, v, after - 1)
    i = after
    if string.byte(s, i) == 44 then i = i + 1 end
  end
  return found
end

local function apply(key, tomb, op, pos, first, count, u0, nu)
  local cur, err = read('GET', key)
  if err then return err end
  local curpos = cur and string.match(cur, POS_PATTERN)
  -- See the hash script: a row written here means no tombstone.
  local dead = false
  if not curpos then
    dead, err = read('GET', tomb)
    if err then return err end
  end
  if (curpos and pos <= curpos) or (dead and pos <= dead) then return 0 end
  if op == 'd' then
    redis.call('SET', tomb, pos, 'EX', retention)
    redis.call('DEL', key)
    return 1
  end
  local value = ARGV[first]
  if nu > 0 and cur then
    -- A stored value we cannot read (not ours) has nothing to keep.
    local ok, stored = pcall(members, cur)
    if ok then
      local extra = {}
      for j = u0, u0 + nu - 1 do
        local raw = stored[ARGV[j]]
        if raw then extra[#extra + 1] = ARGV[j] .. ':' .. raw end
      end
      -- value always holds __cdc_position, so the object is never empty here.
      if #extra > 0 then value = string.sub(value, 1, -2) .. ',' .. table.concat(extra, ',') .. '}' end
    end
  end
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
  if dead then redis.call('DEL', tomb) end
  return 1
end
${RUN}`;

/** KEYS[1] = a table's watermark key, ARGV[1] = a truncate's position: raises the watermark to it. */
export const MARK_SCRIPT = String.raw`
local cur = redis.call('GET', KEYS[1])
if not cur or cur < ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`;

/**
 * KEYS = row keys of a truncated table, ARGV[1] = the truncate's position: removes the rows older
 * than it, and keys without a position of ours (both modes: a hash's field, a JSON string's first
 * member); rows newer than the truncate (it being replayed after them) stay. Returns how many went.
 */
export const SWEEP_SCRIPT = String.raw`
local removed = 0
for i = 1, #KEYS do
  local k = KEYS[i]
  local t = redis.call('TYPE', k).ok
  local pos = nil
  if t == 'hash' then
    pos = redis.call('HGET', k, '${POSITION_FIELD}')
  elseif t == 'string' then
    pos = string.match(redis.call('GET', k), '${JSON_POS_PATTERN}')
  end
  if t ~= 'none' and (not pos or pos < ARGV[1]) then
    redis.call('UNLINK', k)
    removed = removed + 1
  end
end
return removed
`;
