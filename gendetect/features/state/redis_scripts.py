"""The Redis store's Lua scripts and the sortable encodings they compare.

Per key history (`<prefix>:<x>:<series key>`, the series key being the
entity's columns and the key's digest):
- `e:` a sorted set of members "<time>:<id>" (times and ids as 20-digit
  unsigned decimals, so that lexicographic order is (time, id) order for
  every int64, 1969 included): ZLEXCOUNT at a bound is a position in the
  history, O(log n);
- `p:` a hash id -> the exact running prefix sums up to and including that
  event (JSON {column: [present count, sum of (x + 2**124), sum of x**2]},
  decimal strings, x in units of 2**-64 as in gendetect.features.state.
  series; the bias keeps the sums non-negative, for the script adds decimal
  strings only), and field `b`: the sums up to the last pruned event;
- `v:` a hash id -> the event's values and distinct digests (JSON), read only
  for min, max and distinct (the window's events);
- the fraud labels, as the memory series keeps them: `l:` id ->
  "<labelled_at>:<time>", `fe:` the applied ones (labelled_at up to the
  history's newest time) by event ("<time>:<id>"), `fa:` the applied ones by
  arrival ("<labelled_at>:<time>:<id>"), `fw:` the waiting ones by arrival.
Per transaction a hash `<prefix>:x:<id>`: its fingerprint (f), time (t) and
one field per history holding it; the last history to prune it deletes it.

The record script answers each history with what the windows' bounds need
(gendetect.features.state.redis_reply): positions (ZLEXCOUNT), the prefix
sums and applied-fraud counts there, the previous event and the label
corrections for the request's time: O(log history) per bound. Only groups
with min, max or distinct get their windows' events.
"""

from __future__ import annotations

from gendetect.features.state.model import INT64_MIN

# Times and ids go into Redis as unsigned 20-digit decimals (value + 2**63),
# so that Redis' lexicographic order on sorted-set members is numeric order
# for every int64, before 1970 included (Lua numbers are doubles and cannot
# hold nanosecond times exactly, so the scripts never do arithmetic on them).
_DIGITS = 20
_BIAS = 2**63
_TOP = 10**_DIGITS - 1


def encode_int(value: int) -> str:
    """An int64 (or a bound beyond it, clamped) as a sortable string."""
    return f"{min(max(value + _BIAS, 0), _TOP):0{_DIGITS}d}"


def decode_int(text: bytes | str) -> int:
    return int(text) - _BIAS


def prune_bound(cutoff_ns: int) -> str:
    """ZRANGEBYLEX max for the members at or before `cutoff_ns` ('' if none
    can be): ':' < ';', so every "<time>:..." member with time <= cutoff sorts
    below "(<cutoff>;"."""
    return "" if cutoff_ns < INT64_MIN else f"({encode_int(cutoff_ns)};"


# Window bounds: ZLEXCOUNT maxima, and the event keys
# (gendetect.features.state.model.event_key) they stand for: an event is
# below a bound iff its key is below the bound's key.
BELOW_ALL = -(2**200)  # the key of bound '-': no event is below it


def at_or_before(time_ns: int) -> str:
    """The bound below which lie the events at or before `time_ns`."""
    return "-" if time_ns < INT64_MIN else f"({encode_int(time_ns)};"


def upto(time_ns: int, tx_id: int) -> str:
    """The bound below which lie the events up to (time, id), inclusive."""
    return f"({encode_int(time_ns)}:{encode_int(tx_id)};"


def before(time_ns: int, tx_id: int) -> str:
    """The bound below which lie the events before (time, id)."""
    return f"({encode_int(time_ns)}:{encode_int(tx_id)}"


# KEYS: 1 the id's tx hash, then per history of the request its 7 keys:
#       e, v, p, l, fe, fa, fw (see the module docstring).
# ARGV: 1 id, 2 time, 3 record flag, 4 fingerprint, 5 the number n of
#       histories, then per history: ttl ms, keep bound (time + horizon: the
#       history keeps the event iff its newest time sorts below), prune bound
#       ('' none), series key, payload, prefix delta (JSON {column: [present,
#       x + 2**124, x**2]}), flags ('p' prefix sums, 'f' frauds, 's' the
#       previous event), lo and hi (ZRANGEBYLEX bounds of the events min, max
#       and distinct read, '' none), the number m of bounds, then the m
#       bounds (ZLEXCOUNT maxima, or '-').
# Reply: {added (1, 0, or -1 for a conflicting duplicate), then per history
#       {positions, prefix sums, applied-fraud counts (per bound), previous
#       member, newest member, sign, label corrections, members, values}}.
RECORD_AND_READ = """
local function add(a, b)
  -- Sum of two non-negative decimal strings, seven digits at a time (exact
  -- in Lua's doubles).
  if a == '0' then return b end
  if b == '0' then return a end
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local x, y = 0, 0
    if i > 0 then x = tonumber(string.sub(a, math.max(i - 6, 1), i)) end
    if j > 0 then y = tonumber(string.sub(b, math.max(j - 6, 1), j)) end
    local sum = x + y + carry
    carry = math.floor(sum / 10000000)
    table.insert(out, 1, string.format('%07d', sum % 10000000))
    i, j = i - 7, j - 7
  end
  local text = string.gsub(table.concat(out), '^0+', '')
  if text == '' then return '0' end
  return text
end
local function add_sums(sums, delta)
  -- Columns the delta lacks carry on (a plan that no longer reads them).
  local out = {}
  for c, v in pairs(sums) do out[c] = v end
  for c, d in pairs(delta) do
    local s = out[c]
    if not s then out[c] = d
    elseif d[1] ~= '0' then out[c] = {add(s[1], d[1]), add(s[2], d[2]), add(s[3], d[3])} end
  end
  return out
end
local function sums_below(z, p, bound)
  -- The prefix sums up to the last event below `bound` (JSON, '' none).
  if bound ~= '-' then
    local m = redis.call('ZREVRANGEBYLEX', z, bound, '-', 'LIMIT', 0, 1)[1]
    if m then return redis.call('HGET', p, string.sub(m, 22)) or '' end
  end
  return redis.call('HGET', p, 'b') or ''
end
local function hmget(key, ids)
  -- In chunks: unpack() is limited to a few thousand values.
  local out = {}
  for first = 1, #ids, 1000 do
    local chunk = {}
    for j = first, math.min(first + 999, #ids) do chunk[#chunk + 1] = ids[j] end
    local got = redis.call('HMGET', key, unpack(chunk))
    for j = 1, #chunk do out[#out + 1] = got[j] end
  end
  return out
end
local function ids_of(members)
  local ids = {}
  for j, m in ipairs(members) do ids[j] = string.sub(m, 22) end
  return ids
end
local tid, t = ARGV[1], ARGV[2]
local me = t .. ':' .. tid
local n = tonumber(ARGV[5])
local H, a = {}, 6
for i = 1, n do
  local k = 1 + (i - 1) * 7
  local h = {z = KEYS[k + 1], v = KEYS[k + 2], p = KEYS[k + 3], l = KEYS[k + 4],
             fe = KEYS[k + 5], fa = KEYS[k + 6], fw = KEYS[k + 7],
             ttl = ARGV[a], keep = ARGV[a + 1], prune = ARGV[a + 2], sk = ARGV[a + 3],
             payload = ARGV[a + 4], delta = ARGV[a + 5], flags = ARGV[a + 6],
             lo = ARGV[a + 7], hi = ARGV[a + 8], bounds = {}}
  local m = tonumber(ARGV[a + 9])
  for j = 1, m do h.bounds[j] = ARGV[a + 9 + j] end
  a = a + 10 + m
  H[i] = h
end
local added = 0
if ARGV[3] == '1' then
  local known = redis.call('HGET', KEYS[1], 'f')
  if known then
    if known ~= ARGV[4] then return {-1} end
  else
    local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 20)
    local held, ttl = {}, 0
    for i = 1, n do
      local h = H[i]
      local last = redis.call('ZRANGE', h.z, -1, -1)[1]
      if (not last) or string.sub(last, 1, 20) < h.keep then
        local delta = cjson.decode(h.delta)
        local below = sums_below(h.z, h.p, '(' .. me)
        local sums = {}
        if below ~= '' then sums = cjson.decode(below) end
        redis.call('HSET', h.p, tid, cjson.encode(add_sums(sums, delta)))
        if last and last > me then
          -- Out of order: the later events' sums include this one now.
          for _, m in ipairs(redis.call('ZRANGEBYLEX', h.z, '(' .. me, '+')) do
            local id = string.sub(m, 22)
            local old = redis.call('HGET', h.p, id)
            local base = {}
            if old then base = cjson.decode(old) end
            redis.call('HSET', h.p, id, cjson.encode(add_sums(base, delta)))
          end
        end
        redis.call('ZADD', h.z, 0, me)
        redis.call('HSET', h.v, tid, h.payload)
        table.insert(held, h.sk)
        table.insert(held, '1')
        ttl = math.max(ttl, tonumber(h.ttl))
        if h.prune ~= '' then
          while true do
            local old = redis.call('ZRANGEBYLEX', h.z, '-', h.prune, 'LIMIT', 0, 1000)
            if #old == 0 then break end
            local ids = ids_of(old)
            for _, id in ipairs(ids) do
              local tk = prefix .. id
              redis.call('HDEL', tk, h.sk)
              if redis.call('HLEN', tk) <= 2 then redis.call('DEL', tk) end
            end
            local base = redis.call('HGET', h.p, ids[#ids])
            if base then redis.call('HSET', h.p, 'b', base) end
            local labels = redis.call('HMGET', h.l, unpack(ids))
            for j = 1, #ids do
              if labels[j] then  -- a fraud of a pruned event: out of every list
                local by_at = labels[j] .. ':' .. ids[j]
                redis.call('ZREM', h.fe, old[j])
                redis.call('ZREM', h.fa, by_at)
                redis.call('ZREM', h.fw, by_at)
              end
            end
            for _, key in ipairs({h.v, h.p, h.l}) do redis.call('HDEL', key, unpack(ids)) end
            redis.call('ZREM', h.z, unpack(old))
          end
        end
        -- Waiting labels the history's newest time has reached are applied.
        local newest = string.sub(redis.call('ZRANGE', h.z, -1, -1)[1], 1, 20)
        for _, m in ipairs(redis.call('ZRANGEBYLEX', h.fw, '-', '(' .. newest .. ';')) do
          redis.call('ZREM', h.fw, m)
          redis.call('ZADD', h.fa, 0, m)
          redis.call('ZADD', h.fe, 0, string.sub(m, 22))
        end
      end
      -- Written to even when the event is too old for it: the key is in use.
      for _, key in ipairs({h.z, h.v, h.p, h.l, h.fe, h.fa, h.fw}) do
        redis.call('PEXPIRE', key, h.ttl)
      end
    end
    if #held > 0 then
      redis.call('HSET', KEYS[1], 'f', ARGV[4], 't', t, unpack(held))
      redis.call('PEXPIRE', KEYS[1], ttl)
      added = 1
    end
  end
end
local out = {added}
for i = 1, n do
  local h = H[i]
  local last = redis.call('ZRANGE', h.z, -1, -1)[1] or ''
  local want_sums = string.find(h.flags, 'p', 1, true)
  local want_frauds = string.find(h.flags, 'f', 1, true)
  local at, sums, frauds = {}, {}, {}
  for j, b in ipairs(h.bounds) do
    if b == '-' then at[j] = 0 else at[j] = redis.call('ZLEXCOUNT', h.z, '-', b) end
    if want_sums then sums[j] = sums_below(h.z, h.p, b) end
    if want_frauds then
      if b == '-' then frauds[j] = 0 else frauds[j] = redis.call('ZLEXCOUNT', h.fe, '-', b) end
    end
  end
  local prev = ''
  if string.find(h.flags, 's', 1, true) then
    prev = redis.call('ZREVRANGEBYLEX', h.z, '(' .. me, '-', 'LIMIT', 0, 1)[1] or ''
  end
  -- Corrections for this request's time: waiting labels that arrived by
  -- then (a request at or after the newest time), or applied ones that
  -- arrived after it (an earlier request).
  local sign, late = 1, {}
  if want_frauds and last ~= '' then
    if t >= string.sub(last, 1, 20) then
      late = redis.call('ZRANGEBYLEX', h.fw, '-', '(' .. t .. ';')
    else
      late = redis.call('ZRANGEBYLEX', h.fa, '(' .. t .. ';', '+')
      sign = -1
    end
  end
  local members, values = {}, {}
  if h.lo ~= '' then
    members = redis.call('ZRANGEBYLEX', h.z, h.lo, h.hi)
    if #members > 0 then values = hmget(h.v, ids_of(members)) end
  end
  out[i + 1] = {at, sums, frauds, prev, last, sign, late, members, values}
end
return out
"""

# A label, into the fraud lists of every history still holding the
# transaction: out of them if it was a fraud; a fraud goes into the applied
# lists if it arrived by the history's newest time, else it waits.
# KEYS: the id's tx hash. ARGV: id, '1' or '0', key prefix, labelled_at.
# The label keys get their history's remaining time.
ADD_LABEL = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return 0 end
local t
for j = 1, #fields, 2 do
  if fields[j] == 't' then t = fields[j + 1] end
end
local id = ARGV[1]
local member = t .. ':' .. id
for j = 1, #fields, 2 do
  local name = fields[j]
  if name ~= 'f' and name ~= 't' then
    local z = ARGV[3] .. 'e:' .. name
    if redis.call('ZSCORE', z, member) then
      local l, fe = ARGV[3] .. 'l:' .. name, ARGV[3] .. 'fe:' .. name
      local fa, fw = ARGV[3] .. 'fa:' .. name, ARGV[3] .. 'fw:' .. name
      local old = redis.call('HGET', l, id)
      if old then
        redis.call('ZREM', fe, member)
        redis.call('ZREM', fa, old .. ':' .. id)
        redis.call('ZREM', fw, old .. ':' .. id)
      end
      if ARGV[2] == '1' then
        local value = ARGV[4] .. ':' .. t
        redis.call('HSET', l, id, value)
        local newest = string.sub(redis.call('ZRANGE', z, -1, -1)[1], 1, 20)
        if ARGV[4] <= newest then
          redis.call('ZADD', fe, 0, member)
          redis.call('ZADD', fa, 0, value .. ':' .. id)
        else
          redis.call('ZADD', fw, 0, value .. ':' .. id)
        end
      else
        redis.call('HDEL', l, id)
      end
      local ttl = math.max(redis.call('PTTL', z), 1)
      for _, key in ipairs({l, fe, fa, fw}) do
        if redis.call('EXISTS', key) == 1 then redis.call('PEXPIRE', key, ttl) end
      end
    end
  end
end
return 1
"""
