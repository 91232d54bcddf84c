//! The Lua scripts the store runs, each atomic: the buckets of rate limits
//! (as `edge_router::limits` keeps them) and the daily budget ledger (as
//! `origin_fallback::Ledger` keeps it). The pieces both scripts of a kind
//! need are written once, as Lua functions put before each script.

/// A bucket's refill and its write-back: `available` is what `key` holds
/// at `now` (at most `limit`) and when it was last written; `put` writes a
/// level (its time never moving back, whatever a box's clock says) and
/// keeps the key until the bucket would be full again.
macro_rules! bucket_functions {
    () => {
        r"
local function available(key, limit, now)
  local b = redis.call('HMGET', key, 'level', 'at')
  local level, at = tonumber(b[1]), tonumber(b[2])
  if level == nil or at == nil then level, at = limit, now end
  return math.min(limit, level + math.max(0, now - at) * limit / 60000), at
end
local function put(key, limit, level, at, now)
  redis.call('HSET', key, 'level', tostring(level), 'at', tostring(math.max(at, now)))
  redis.call('PEXPIRE', key, math.ceil((limit - level) * 60000 / limit) + 1000)
end
"
    };
}

/// A ledger's move to a later day: spending starts again from zero and the
/// old day's reservations go. Returns the ledger's day.
macro_rules! ledger_functions {
    () => {
        r"
local function roll(key, day)
  local current = tonumber(redis.call('HGET', key, 'day') or '-1')
  if day > current then
    redis.call('DEL', key)
    redis.call('HSET', key, 'day', tostring(day), 'spent', '0', 'last', '0')
    current = day
  end
  return current
end
"
    };
}

/// Takes `amount` from every bucket, or from none (`KEYS`: the buckets;
/// `ARGV`: now, then a limit and an amount per bucket). Returns 1 and what
/// is left in each, or 0, the first bucket that is short, and what each has.
pub const RESERVE: &str = concat!(
    bucket_functions!(),
    r"
local now = tonumber(ARGV[1])
local avail, ats, short = {}, {}, 0
for i = 1, #KEYS do
  local limit, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  avail[i], ats[i] = available(KEYS[i], limit, now)
  if short == 0 and avail[i] < amount then short = i end
end
local out = {}
if short > 0 then
  out[1], out[2] = 0, short
  for i = 1, #KEYS do out[i + 2] = tostring(avail[i]) end
  return out
end
out[1], out[2] = 1, 0
for i = 1, #KEYS do
  local limit, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local level = avail[i] - amount
  put(KEYS[i], limit, level, ats[i], now)
  out[i + 2] = tostring(level)
end
return out
"
);

/// Takes `amount` from every bucket whatever is left (a negative amount
/// gives back; a bucket may go into debt, never above its limit). For
/// settlements, and what a box counted alone.
pub const TAKE: &str = concat!(
    bucket_functions!(),
    r"
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local limit, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local avail, at = available(KEYS[i], limit, now)
  put(KEYS[i], limit, math.min(limit, avail - amount), at, now)
end
return 1
"
);

/// Reserves `amount` of a node's daily budget (`KEYS[1]`; `ARGV`: day,
/// amount, limit, now, expiry) if settled spending, open reservations and
/// it stay within `limit`, as `origin_fallback::Ledger` does; a later day
/// starts from zero and expired reservations lapse. Returns 1 (or 0), the
/// reservation's token, and the day's settled spending.
pub const BUDGET_RESERVE: &str = concat!(
    ledger_functions!(),
    r"
local key = KEYS[1]
local day, amount, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, expires = tonumber(ARGV[4]), tonumber(ARGV[5])
local spent = 0
if day == roll(key, day) then spent = tonumber(redis.call('HGET', key, 'spent') or '0') end
local held = 0
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 5) == 'open:' then
    local v = fields[i + 1]
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, sep + 1)) <= now then
      redis.call('HDEL', key, fields[i])
    else
      held = held + tonumber(string.sub(v, 1, sep - 1))
    end
  end
end
if spent + held + amount > limit then return {0, '', tostring(spent)} end
local token = redis.call('HINCRBY', key, 'last', 1)
redis.call('HSET', key, 'open:' .. token, tostring(amount) .. ':' .. tostring(expires))
redis.call('PEXPIRE', key, 3 * 86400000)
return {1, tostring(token), tostring(spent)}
"
);

/// Releases reservation `ARGV[1]` (none if empty) of a node's budget and
/// adds cost `ARGV[3]` to day `ARGV[2]`'s spending (a day already over is
/// dropped). Returns the day's spending.
pub const BUDGET_SETTLE: &str = concat!(
    ledger_functions!(),
    r"
local key = KEYS[1]
local day, cost = tonumber(ARGV[2]), math.max(0, tonumber(ARGV[3]))
if ARGV[1] ~= '' then redis.call('HDEL', key, 'open:' .. ARGV[1]) end
if day == roll(key, day) then redis.call('HINCRBYFLOAT', key, 'spent', tostring(cost)) end
redis.call('PEXPIRE', key, 3 * 86400000)
return tostring(redis.call('HGET', key, 'spent'))
"
);
