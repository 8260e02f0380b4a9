"""The Lua scripts behind every multi-step StateStore operation.

Each runs atomically in Redis (a script is one command), reads the server
clock with ``TIME`` (so every gateway instance sharing the Redis agrees on
"now" whatever its own clock says), and returns numbers as strings: Redis
would truncate a Lua number to an integer reply. Numbers are written with
:data:`_PRELUDE`'s ``fmt`` -- the shortest decimal that reads back as the
same double, like Python's ``repr`` -- so stored values and sums round-trip
exactly and the float arithmetic matches the in-memory store's step for step.

Key layout (``<ns>`` is ``state.options.prefix``), one Redis key per kind so
that a value, a window and a bucket may share a StateStore key as they do in
:class:`~swarmgate.state.MemoryStateStore`:

* ``<ns>v:<key>`` -- a value or counter: a Redis string (counters hold the
  decimal text of their value);
* ``<ns>w:<key>`` -- a sliding window's points: a sorted set scored by the
  server time of each point; the member is ``<seq>:<amount>`` (``seq`` is a
  zero-padded hex sequence number, unique and in insertion order);
* ``<ns>s:<key>`` -- that window's running total and sequence: a hash
  ``{sum, seq}``;
* ``<ns>b:<key>`` -- a token bucket: a hash ``{level, stamp}``, plus
  ``{debt, debt_exp}`` (tokens owed, and when that debt expires, server
  time) while it has debt (:data:`TAKE_MANY`).
"""

from __future__ import annotations

import hashlib

import attrs

#: Helpers shared by the scripts (each script is sent whole; Redis has no includes).
_PRELUDE = r"""
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  if x ~= x then return 'nan' end
  if x == math.huge then return 'inf' end
  if x == -math.huge then return '-inf' end
  local s = string.format('%.15g', x)
  if tonumber(s) ~= x then
    s = string.format('%.16g', x)
    if tonumber(s) ~= x then s = string.format('%.17g', x) end
  end
  if not string.find(s, '[.eni]') then s = s .. '.0' end
  return s
end
"""

#: KEYS: value key. ARGV: amount, ttl in ms ('' = none; <= 0 = expired at once).
#: The ttl applies only when the counter is created; an existing one keeps its expiry.
INCR = r"""
local cur = redis.call('GET', KEYS[1])
local amount = tonumber(ARGV[1])
local value
if cur then
  local n = 0
  if cur ~= '' then n = tonumber(cur) end
  if n == nil then return redis.error_reply('SWARMGATE_NOT_A_NUMBER the value is not a number') end
  value = n + amount
  redis.call('SET', KEYS[1], fmt(value), 'KEEPTTL')
else
  value = 0.0 + amount
  if ARGV[2] == '' then
    redis.call('SET', KEYS[1], fmt(value))
  else
    if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], fmt(value), 'PX', ARGV[2]) end
  end
end
return fmt(value)
"""

#: Drop the points of window KEYS[1] (total in hash KEYS[2]) at or before
#: ``t - window`` and return the remaining total (0 when no point is left,
#: as the memory store resets it).
_TRIM = r"""
local function trim(points, totals, window, t)
  local horizon = fmt(t - window)
  local total = tonumber(redis.call('HGET', totals, 'sum') or '0')
  local old = redis.call('ZRANGEBYSCORE', points, '-inf', horizon)
  for _, member in ipairs(old) do
    total = total - tonumber(string.match(member, ':(.*)$'))
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', points, '-inf', horizon) end
  if redis.call('EXISTS', points) == 0 then return 0.0, 0 end
  return total, #old
end
"""

#: KEYS: points (zset), totals (hash). ARGV: amount, window (s), expiry in ms ('' = none).
WINDOW_ADD = r"""
local t = now()
local total = trim(KEYS[1], KEYS[2], tonumber(ARGV[2]), t)
local amount = tonumber(ARGV[1])
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('ZADD', KEYS[1], fmt(t), string.format('%012x', seq) .. ':' .. fmt(amount))
total = total + amount
redis.call('HSET', KEYS[2], 'sum', fmt(total))
if ARGV[3] == '' then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return fmt(total)
"""

#: KEYS: points (zset), totals (hash). ARGV: window (s).
WINDOW_TOTAL = r"""
local total, dropped = trim(KEYS[1], KEYS[2], tonumber(ARGV[1]), now())
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
elseif dropped > 0 then
  redis.call('HSET', KEYS[2], 'sum', fmt(total))
end
return fmt(total)
"""

#: KEYS: bucket (hash). ARGV: rate (tokens/s), capacity, tokens.
#: Returns {allowed (0/1), level, retry_after}. A bucket that is absent reads
#: as full, so the hash expires once it would have refilled (plus a second),
#: or once its debt (see TAKE_MANY) has expired if that is later.
TAKE_TOKENS = r"""
local t = now()
local rate, capacity, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'level', 'stamp', 'debt_exp')
local level
if bucket[1] then
  local elapsed = t - tonumber(bucket[2])
  if elapsed < 0 then elapsed = 0 end
  level = math.min(capacity, tonumber(bucket[1]) + elapsed * rate)
else
  level = capacity
end
local allowed, wait = 0, 0.0
if level >= tokens then
  level = level - tokens
  allowed = 1
elseif rate > 0 then
  wait = (tokens - level) / rate
else
  wait = math.huge
end
redis.call('HSET', KEYS[1], 'level', fmt(level), 'stamp', fmt(t))
if rate > 0 then
  local ms = math.ceil((capacity - level) / rate * 1000) + 1000
  if bucket[3] then ms = math.max(ms, math.ceil((tonumber(bucket[3]) - t) * 1000) + 1000) end
  if ms ~= ms or ms >= 1e15 then
    redis.call('PERSIST', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(ms, 1000)))
  end
else
  redis.call('PERSIST', KEYS[1])
end
return {allowed, fmt(level), fmt(wait)}
"""

#: KEYS: bucket hashes, one per operation (a key may repeat). ARGV: four per
#: operation: rate (tokens/s), capacity, tokens, mode ('take', 'reserve',
#: 'charge': see swarmgate.state.TakeMode). All or nothing: each bucket is
#: staged on first sight, the operations run in order on the staged copies,
#: and the copies are written only if none was refused. Returns {refused
#: (1-based index, 0: none), retry_after, level...}: the levels after each
#: operation, or when refused the unchanged levels up to the refused one.
TAKE_MANY = r"""
local t = now()
local staged, order, levels = {}, {}, {}
local function owe(s, amount, capacity, rate)
  if s.dexp and s.dexp > t then
    s.debt = s.debt + amount
  else
    s.debt = amount
    if rate > 0 then s.dexp = t + (capacity + amount) / rate else s.dexp = math.huge end
  end
end
for i = 1, #KEYS do
  local key, base = KEYS[i], (i - 1) * 4
  local rate, capacity, tokens, mode = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), ARGV[base + 4]
  local s = staged[key]
  if not s then
    local b = redis.call('HMGET', key, 'level', 'stamp', 'debt', 'debt_exp')
    local level = capacity
    if b[1] then
      local elapsed = t - tonumber(b[2])
      if elapsed < 0 then elapsed = 0 end
      level = math.min(capacity, tonumber(b[1]) + elapsed * rate)
    end
    s = {level = level, first = level, debt = 0.0, dexp = nil, had = b[3] ~= false}
    if b[4] and tonumber(b[4]) > t then
      s.debt, s.dexp = tonumber(b[3]), tonumber(b[4])
    end
    staged[key] = s
    order[#order + 1] = key
  elseif s.level > capacity then
    s.level = capacity
  end
  s.rate, s.capacity = rate, capacity
  local level, short = s.level, nil
  if mode == 'take' then
    if level < tokens then short = tokens - level else s.level = level - tokens end
  elseif mode == 'reserve' then
    local debt = 0.0
    if s.dexp and s.dexp > t and s.debt > 0 then debt = s.debt end
    local want = tokens + debt
    local take = want
    if take > capacity then take = capacity end
    if level < take then
      short = take - level
    else
      s.level = level - take
      if debt > 0 then s.debt = 0.0 end
      if want > take then owe(s, want - take, capacity, rate) end
    end
  elseif level >= tokens then
    s.level = level - tokens
  else
    local drained = 0.0
    if level > 0 then drained = level end
    s.level = level - drained
    owe(s, tokens - drained, capacity, rate)
  end
  if short then
    local wait = math.huge
    if rate > 0 then wait = short / rate end
    local out = {i, fmt(wait)}
    for j = 1, i do out[#out + 1] = fmt(staged[KEYS[j]].first) end
    return out
  end
  levels[#levels + 1] = fmt(s.level)
end
for _, key in ipairs(order) do
  local s = staged[key]
  local ms = nil
  if s.rate > 0 then ms = math.ceil((s.capacity - s.level) / s.rate * 1000) + 1000 end
  if s.dexp and s.dexp > t then
    redis.call('HSET', key, 'level', fmt(s.level), 'stamp', fmt(t), 'debt', fmt(s.debt), 'debt_exp', fmt(s.dexp))
    if ms then ms = math.max(ms, math.ceil((s.dexp - t) * 1000) + 1000) end
  else
    redis.call('HSET', key, 'level', fmt(s.level), 'stamp', fmt(t))
    if s.had then redis.call('HDEL', key, 'debt', 'debt_exp') end
  end
  if ms == nil or ms ~= ms or ms >= 1e15 then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, string.format('%d', math.max(ms, 1000)))
  end
end
local out = {0, '0.0'}
for j = 1, #levels do out[#out + 1] = levels[j] end
return out
"""

#: KEYS: value keys, one per operation (a key may repeat). ARGV: three per
#: operation: amount, ttl in ms as INCR's ('' = none), ceiling ('' = none).
#: All or nothing, in order, as INCR each; nothing is written when a counter
#: would end above its ceiling. Returns {refused (1-based index, 0: none),
#: value...}: each counter's value after its operation (up to the refused one).
INCR_MANY = r"""
local staged, order, out = {}, {}, {0}
for i = 1, #KEYS do
  local key, base = KEYS[i], (i - 1) * 3
  local s = staged[key]
  if not s then
    local cur = redis.call('GET', key)
    if cur then
      local n = 0
      if cur ~= '' then n = tonumber(cur) end
      if n == nil then return redis.error_reply('SWARMGATE_NOT_A_NUMBER ' .. i) end
      s = {value = n, exists = true}
    else
      s = {value = 0.0, exists = false, ttl = ARGV[base + 2]}
    end
    staged[key] = s
    order[#order + 1] = key
  end
  s.value = s.value + tonumber(ARGV[base + 1])
  out[#out + 1] = fmt(s.value)
  local ceiling = ARGV[base + 3]
  if ceiling ~= '' and s.value > tonumber(ceiling) then
    out[1] = i
    return out
  end
end
for _, key in ipairs(order) do
  local s = staged[key]
  if s.exists then
    redis.call('SET', key, fmt(s.value), 'KEEPTTL')
  elseif s.ttl == '' then
    redis.call('SET', key, fmt(s.value))
  elseif tonumber(s.ttl) > 0 then
    redis.call('SET', key, fmt(s.value), 'PX', s.ttl)
  end
end
return out
"""

#: KEYS: the four Redis keys (value, points, totals, bucket) of each StateStore
#: key in turn. Returns how many StateStore keys had any of them.
DELETE = r"""
local found = 0
for i = 1, #KEYS, 4 do
  if redis.call('DEL', KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]) > 0 then found = found + 1 end
end
return found
"""

#: The error INCR raises when the value is not a number (mapped to ValueError).
NOT_A_NUMBER = "SWARMGATE_NOT_A_NUMBER"


@attrs.frozen
class Script:
    """A script's full source and its SHA-1 (what ``EVALSHA`` names it by)."""

    name: str
    source: str
    sha: str

    @classmethod
    def of(cls, name: str, body: str, *, trim: bool = False) -> Script:
        """The script ``body`` with the prelude (and the window trim) in front."""
        source = _PRELUDE + (_TRIM if trim else "") + body
        return cls(name, source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


SCRIPTS = {
    "incr": Script.of("incr", INCR),
    "window_add": Script.of("window_add", WINDOW_ADD, trim=True),
    "window_total": Script.of("window_total", WINDOW_TOTAL, trim=True),
    "take_tokens": Script.of("take_tokens", TAKE_TOKENS),
    "take_many": Script.of("take_many", TAKE_MANY),
    "incr_many": Script.of("incr_many", INCR_MANY),
    "delete": Script.of("delete", DELETE),
}
"""Every script, by the StateStore operation it implements."""
