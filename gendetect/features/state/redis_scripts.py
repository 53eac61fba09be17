"""The Redis store's Lua scripts and the sortable encodings of what they
store, and the series a reply becomes.

Per key history (`<prefix>:e:<series key>`, the series key being the
entity's columns and the key's digest) a sorted set of members
"<time>:<id>" (times and ids as 20-digit unsigned decimals, so that
lexicographic order is numeric order for every int64, 1969 included), a hash
`<prefix>:v:<series key>` id -> the event's values and distinct digests
(JSON), and a hash `<prefix>:l:<series key>` id -> "<label>:<labelled_at>".
Per transaction a hash `<prefix>:x:<id>`: its fingerprint (f), time (t) and
one field per history holding it; the last history to prune it deletes it.
The record script answers with the slice of each history the request's
windows can reach, (t - horizon, t], with values and labels: the client
builds a KeySeries from it and answers with the memory store's arithmetic
(gendetect.features.state.answer), so both stores agree exactly; a request
costs one round trip and O(slice) transfer.
"""

from __future__ import annotations

from typing import Any

import orjson

from gendetect.features.state.model import INT64_MIN, event_key
from gendetect.features.state.plan import EntityPlan
from gendetect.features.state.series import Column, KeySeries

# Times and ids go into Redis as unsigned 20-digit decimals (value + 2**63),
# so that Redis' lexicographic order on sorted-set members is numeric order
# for every int64, before 1970 included (Lua numbers are doubles and cannot
# hold nanosecond times exactly, so the scripts never do arithmetic on them).
_DIGITS = 20
_BIAS = 2**63
_TOP = 10**_DIGITS - 1
_NAN = float("nan")


def encode_int(value: int) -> str:
    """An int64 (or a bound beyond it, clamped) as a sortable string."""
    return f"{min(max(value + _BIAS, 0), _TOP):0{_DIGITS}d}"


def prune_bound(cutoff_ns: int) -> str:
    """ZRANGEBYLEX max for the members at or before `cutoff_ns` ('' if none
    can be): ':' < ';', so every "<time>:..." member with time <= cutoff sorts
    below "(<cutoff>;"."""
    return "" if cutoff_ns < INT64_MIN else f"({encode_int(cutoff_ns)};"


def after_bound(time_ns: int) -> str:
    """ZRANGEBYLEX min for the members after `time_ns` ('-': all)."""
    return "-" if time_ns < INT64_MIN else f"({encode_int(time_ns)};"


# KEYS: 1 the id's tx hash, then per history of the request: its sorted set,
#       values hash, labels hash.
# ARGV: 1 id, 2 time, 3 record flag, 4 fingerprint, 5 the number n of
#       histories, then per history 7 fields: ttl ms, keep bound (time +
#       horizon: the history keeps the event iff its newest time sorts
#       below), prune bound ('' none), series key, payload, slice start, and
#       what the answer needs of the slice: "vl" (values, labels, both or
#       neither: a history read only for counts needs its members only).
RECORD_AND_READ = """
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
local tid, t = ARGV[1], ARGV[2]
local me = t .. ':' .. tid
local n = tonumber(ARGV[5])
local added = 0
if ARGV[3] == '1' then
  local known = redis.call('HGET', KEYS[1], 'f')
  if known then
    if known ~= ARGV[4] then return {-1} end
  else
    local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 20)
    local held, ttl = {}, 0
    for i = 1, n do
      local a, k = 5 + (i - 1) * 7, 1 + (i - 1) * 3
      local z, v, l = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
      local last = redis.call('ZRANGE', z, -1, -1)[1]
      if (not last) or string.sub(last, 1, 20) < ARGV[a + 2] then
        redis.call('ZADD', z, 0, me)
        redis.call('HSET', v, tid, ARGV[a + 5])
        table.insert(held, ARGV[a + 4])
        table.insert(held, '1')
        ttl = math.max(ttl, tonumber(ARGV[a + 1]))
        if ARGV[a + 3] ~= '' then
          while true do
            local old = redis.call('ZRANGEBYLEX', z, '-', ARGV[a + 3], 'LIMIT', 0, 1000)
            if #old == 0 then break end
            local ids = {}
            for j, m in ipairs(old) do
              local id = string.sub(m, 22)
              ids[j] = id
              local tk = prefix .. id
              redis.call('HDEL', tk, ARGV[a + 4])
              if redis.call('HLEN', tk) <= 2 then redis.call('DEL', tk) end
            end
            redis.call('HDEL', v, unpack(ids))
            redis.call('HDEL', l, unpack(ids))
            redis.call('ZREM', z, unpack(old))
          end
        end
      end
      -- Written to even when the event is too old for it: the key is in use.
      for _, key in ipairs({z, v, l}) do redis.call('PEXPIRE', key, ARGV[a + 1]) end
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
  local a, k = 5 + (i - 1) * 7, 1 + (i - 1) * 3
  local members = redis.call('ZRANGEBYLEX', KEYS[k + 1], ARGV[a + 6], '(' .. t .. ';')
  local values, labels = {}, {}
  if #members > 0 then
    local ids = {}
    for j, m in ipairs(members) do ids[j] = string.sub(m, 22) end
    if string.find(ARGV[a + 7], 'v', 1, true) then values = hmget(KEYS[k + 2], ids) end
    if string.find(ARGV[a + 7], 'l', 1, true) then labels = hmget(KEYS[k + 3], ids) end
  end
  -- The key's newest member (in-flight events are kept by its time).
  local last = redis.call('ZRANGE', KEYS[k + 1], -1, -1)[1] or ''
  out[i + 1] = {members, values, labels, last}
end
return out
"""

# A label, into the labels hash of every history still holding the
# transaction. KEYS: the id's tx hash. ARGV: id, "<label>:<labelled_at>",
# key prefix. New label hashes get their history's remaining time.
ADD_LABEL = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return 0 end
local t
for j = 1, #fields, 2 do
  if fields[j] == 't' then t = fields[j + 1] end
end
local member = t .. ':' .. ARGV[1]
for j = 1, #fields, 2 do
  local name = fields[j]
  if name ~= 'f' and name ~= 't' then
    local z = ARGV[3] .. 'e:' .. name
    if redis.call('ZSCORE', z, member) then
      local l = ARGV[3] .. 'l:' .. name
      redis.call('HSET', l, ARGV[1], ARGV[2])
      redis.call('PEXPIRE', l, math.max(redis.call('PTTL', z), 1))
    end
  end
end
return 1
"""


def payload(values: dict[str, float], distinct: dict[str, str | None]) -> str:
    """An event's values (NaN as null) and distinct digests, as stored."""
    return orjson.dumps(
        [{c: (None if v != v else v) for c, v in values.items()}, distinct]).decode()


def newest_of(part: list[Any]) -> int | None:
    """The newest event time of the history a reply part describes."""
    last = part[3]
    return int(last[:20]) - _BIAS if last else None


def series_from_reply(part: list[Any], entity: EntityPlan, time_ns: int) -> KeySeries | None:
    """The slice of one history a reply holds, as a KeySeries whose fraud
    labels are those that had arrived by `time_ns`."""
    members, values, labels, _ = part
    if not members:
        return None
    s = KeySeries()
    n = len(members)
    s.times = [int(m[:20]) - _BIAS for m in members]
    s.ids = [int(m[21:]) - _BIAS for m in members]
    decoded = [orjson.loads(p) if p else [{}, {}] for p in values] if values else \
        [[{}, {}]] * n
    s.cols = {c: Column([_NAN if (x := d[0].get(c)) is None else float(x) for d in decoded])
              for c in entity.value_columns}
    s.dcols = {c: [d[1].get(c) for d in decoded] for c in entity.distinct_columns}
    frauds = []
    for j in range(n):
        label = labels[j] if j < len(labels) else None
        if label:
            flag, at = label.split(b":") if isinstance(label, bytes) else label.split(":")
            at_ns = int(at) - _BIAS
            if int(flag) == 1 and at_ns <= time_ns:
                frauds.append((at_ns, event_key(s.times[j], s.ids[j])))
    frauds.sort()
    s.fraud_at = frauds
    s.fraud_keys = sorted(k for _, k in frauds)
    return s
