"""The Redis store's Lua scripts, the sortable encodings of what they
store, and the decoding of their replies into window sums.

The Redis store keeps the same things in sorted sets ordered by (time, id)
(times and ids as 20-digit unsigned decimals, so lexicographic order is
numeric order for every int64, 1969 included): a customer's members carry
the exact running prefix sum of its amounts, a terminal's fraud labels sit
in sorted sets of their own (applied by event and by arrival, waiting by
arrival), and the script answers each window bound by counting members
(ZLEXCOUNT) and reading the prefix sum there: O(log n) per bound as well.
"""

from __future__ import annotations

from math import ldexp
from typing import Any

from gendetect.features.state.model import (
    INT64_MIN,
    OWN_ROW,
    TxEvent,
    WindowPlan,
    WindowSums,
    event_key,
    time_bound,
)
from gendetect.features.state.series import to_fixed

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


def prune_bound(cutoff_ns: int) -> str:
    """ZRANGEBYLEX max for the members at or before `cutoff_ns` ('' if none
    can be): ':' < ';', so every "<time>:..." member with time <= cutoff sorts
    below "(<cutoff>;"."""
    return "" if cutoff_ns < INT64_MIN else f"({encode_int(cutoff_ns)};"


# Added to every amount (in units of 2**-64) in Redis prefix sums: keeps them
# positive (|amount| <= AMOUNT_LIMIT < 2**60).
AMOUNT_BIAS = 2**124


def count_bound(time_ns: int) -> str:
    """ZLEXCOUNT max for the members at or before `time_ns` ('-': none)."""
    return "-" if time_ns < INT64_MIN else f"({encode_int(time_ns)};"


# One round trip per request: unless the id is known (a retry) or its
# terminal can no longer hold it, record it and prune both entities (the
# terminal's pruned transactions leave the id index and its labels); then
# answer the windows' bounds in O(log n) each: per offset the number of
# events at or before time - offset (ZLEXCOUNT), and those up to the request
# itself, and for the customer the running prefix sum at each bound.
#
# A customer's member is "<time>:<id>:<amount>:<prefix>", the prefix being
# the exact running sum, up to and including it, of u = amount in units of
# 2**-64 plus 2**124 (so always positive: the script only adds decimal
# strings; the client subtracts count * 2**124 again). An event older than
# the customer's newest rewrites the prefixes of the later members (the slow
# path, as in the memory store). The terminal sends its first and last event
# and its fraud labels.
# A terminal's fraud labels: "<id>" -> "<labelled_at>:<time>" (hash), the
# applied ones (labelled_at <= its newest time) by event, "<time>:<id>", and
# by arrival, "<labelled_at>:<time>:<id>", and the waiting ones by arrival:
# windows count applied frauds with ZLEXCOUNT as they count events.
# KEYS: customer zset, terminal zset, the id's tx key, terminal labels hash,
#       customer prefix base (the running sum up to its last pruned member),
#       terminal applied frauds by event, by arrival, waiting frauds.
# ARGV: 1 id, 2 time, 3 amount, 4/5 customer/terminal prune bound ('' none),
#       6/7 customer/terminal ttl ms, 8 record flag, 9 fingerprint,
#       10/11 customer/terminal keep bound (time + horizon: an entity keeps
#       the event iff its newest time sorts below), 12 tx key prefix,
#       13 terminal digest, 14 u, 15 the number n of customer offsets, then
#       their count bounds (ascending offsets), then the number m of terminal
#       offsets and theirs.
RECORD_AND_READ = """
local function add(a, b)
  -- Sum of two non-negative decimal strings, seven digits at a time (exact
  -- in Lua's doubles).
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    -- (string.sub counts negative indices from the end: guard them)
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
local function prefix_before(key, bound)
  -- The running sum up to the last member below `bound`; with none, the sum
  -- up to the last pruned one (kept in KEYS[5]).
  local m = redis.call('ZREVRANGEBYLEX', key, bound, '-', 'LIMIT', 0, 1)[1]
  if not m then return redis.call('GET', KEYS[5]) or '0' end
  return string.match(m, ':(%d+)$')
end
local added = 0
local me = ARGV[2] .. ':' .. ARGV[1]
if ARGV[8] == '1' then
  local known = redis.call('GET', KEYS[3])
  if known then
    local fingerprint = string.match(known, '^%S+ %S+ (%S*)$')
    if fingerprint ~= ARGV[9] then return {-1} end
  else
    local last = redis.call('ZRANGE', KEYS[2], -1, -1)
    if #last == 0 or string.sub(last[1], 1, 20) < ARGV[11] then
      local clast = redis.call('ZRANGE', KEYS[1], -1, -1)
      if #clast == 0 or string.sub(clast[1], 1, 20) < ARGV[10] then
        local later = redis.call('ZRANGEBYLEX', KEYS[1], '(' .. me .. ';', '+')
        local prefix = add(prefix_before(KEYS[1], '(' .. me .. ':'), ARGV[14])
        redis.call('ZADD', KEYS[1], 0, me .. ':' .. ARGV[3] .. ':' .. prefix)
        for _, m in ipairs(later) do
          local head, p = string.match(m, '^(.*):(%d+)$')
          redis.call('ZREM', KEYS[1], m)
          redis.call('ZADD', KEYS[1], 0, head .. ':' .. add(p, ARGV[14]))
        end
        if ARGV[4] ~= '' then
          local gone = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[4], '-', 'LIMIT', 0, 1)[1]
          if gone then
            redis.call('SET', KEYS[5], string.match(gone, ':(%d+)$'))
            redis.call('ZREMRANGEBYLEX', KEYS[1], '-', ARGV[4])
          end
        end
      end
      redis.call('PEXPIRE', KEYS[1], ARGV[6])
      redis.call('PEXPIRE', KEYS[5], ARGV[6])
      redis.call('ZADD', KEYS[2], 0, me)
      redis.call('SET', KEYS[3], ARGV[13] .. ' ' .. ARGV[2] .. ' ' .. ARGV[9], 'PX', ARGV[7])
      if ARGV[5] ~= '' then
        while true do
          local old = redis.call('ZRANGEBYLEX', KEYS[2], '-', ARGV[5], 'LIMIT', 0, 1000)
          if #old == 0 then break end
          local txkeys, fields = {}, {}
          for i, m in ipairs(old) do
            local id = string.sub(m, 22)
            txkeys[i] = ARGV[12] .. id
            fields[i] = id
          end
          redis.call('DEL', unpack(txkeys))
          local values = redis.call('HMGET', KEYS[4], unpack(fields))
          for i, v in ipairs(old) do
            if values[i] then  -- a fraud label of a pruned event: out of every list
              local by_at = values[i] .. ':' .. fields[i]
              redis.call('ZREM', KEYS[6], v)
              redis.call('ZREM', KEYS[7], by_at)
              redis.call('ZREM', KEYS[8], by_at)
            end
          end
          redis.call('HDEL', KEYS[4], unpack(fields))
          redis.call('ZREM', KEYS[2], unpack(old))
        end
      end
      -- Waiting labels the terminal's newest time has reached are applied.
      local newest = string.sub(redis.call('ZRANGE', KEYS[2], -1, -1)[1], 1, 20)
      local due = redis.call('ZRANGEBYLEX', KEYS[8], '-', '(' .. newest .. ';')
      for _, m in ipairs(due) do
        redis.call('ZREM', KEYS[8], m)
        redis.call('ZADD', KEYS[7], 0, m)
        redis.call('ZADD', KEYS[6], 0, string.sub(m, 22))
      end
      for k = 2, 8 do
        if k ~= 3 and k ~= 5 then redis.call('PEXPIRE', KEYS[k], ARGV[7]) end
      end
      added = 1
    end
  end
end
local function counts(key, first, n, own)
  local out = {}
  for i = 1, n do out[i] = redis.call('ZLEXCOUNT', key, '-', ARGV[first + i - 1]) end
  out[n + 1] = redis.call('ZLEXCOUNT', key, '-', own)
  return out
end
local nc = tonumber(ARGV[15])
local c_counts = counts(KEYS[1], 16, nc, '(' .. me .. ';')
local c_prefix = {}
for i = 1, nc do
  if ARGV[15 + i] == '-' then c_prefix[i] = '0'
  else c_prefix[i] = prefix_before(KEYS[1], ARGV[15 + i]) end
end
c_prefix[nc + 1] = prefix_before(KEYS[1], '(' .. me .. ';')
local c_stored = #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. me .. ':', '(' .. me .. ';',
                             'LIMIT', 0, 1)
local nt = tonumber(ARGV[16 + nc])
local t_counts = counts(KEYS[2], 17 + nc, nt, '[' .. me)
local t_stored = 0
if redis.call('ZSCORE', KEYS[2], me) then t_stored = 1 end
local f_counts = counts(KEYS[6], 17 + nc, nt, '[' .. me)
-- Corrections for this request's time: waiting labels that arrived by then
-- (a request at or after the newest time), or applied ones that arrived
-- after it (an earlier request).
local last = redis.call('ZRANGE', KEYS[2], -1, -1)[1] or ''
local late, sign = {}, 1
if last == '' or ARGV[2] >= string.sub(last, 1, 20) then
  late = redis.call('ZRANGEBYLEX', KEYS[8], '-', '(' .. ARGV[2] .. ';')
else
  late = redis.call('ZRANGEBYLEX', KEYS[7], '(' .. ARGV[2] .. ';', '+')
  sign = -1
end
return {added, c_counts, c_prefix, c_stored, t_counts, t_stored, f_counts, sign,
        table.concat(late, ' ')}
"""

# A label: out of the fraud lists if it was a fraud; a fraud goes into the
# applied lists if it arrived by the terminal's newest time, else it waits.
# KEYS: the id's tx key. ARGV: id, '1' or '0', key prefix, labelled_at.
# New keys get the transaction's remaining time until the next record of
# the terminal sets their expiry.
ADD_LABEL = """
local known = redis.call('GET', KEYS[1])
if not known then return 0 end
local terminal, t = string.match(known, '^(%S+) (%S+) ')
local labels = ARGV[3] .. 'l:' .. terminal
local by_event = ARGV[3] .. 'fe:' .. terminal
local by_at = ARGV[3] .. 'fa:' .. terminal
local waiting = ARGV[3] .. 'fw:' .. terminal
local member = t .. ':' .. ARGV[1]
local old = redis.call('HGET', labels, ARGV[1])
if old then
  redis.call('ZREM', by_event, member)
  redis.call('ZREM', by_at, old .. ':' .. ARGV[1])
  redis.call('ZREM', waiting, old .. ':' .. ARGV[1])
end
if ARGV[2] ~= '1' then
  redis.call('HDEL', labels, ARGV[1])
  return 1
end
local value = ARGV[4] .. ':' .. t
redis.call('HSET', labels, ARGV[1], value)
local newest = string.sub(redis.call('ZRANGE', ARGV[3] .. 't:' .. terminal, -1, -1)[1], 1, 20)
if ARGV[4] <= newest then
  redis.call('ZADD', by_event, 0, member)
  redis.call('ZADD', by_at, 0, value .. ':' .. ARGV[1])
else
  redis.call('ZADD', waiting, 0, value .. ':' .. ARGV[1])
end
local ttl = math.max(redis.call('PTTL', KEYS[1]), 1)
for _, key in ipairs({labels, by_event, by_at, waiting}) do
  if redis.call('EXISTS', key) == 1 and redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end
return 1
"""


def answer_from_reply(reply: list[Any], event: TxEvent, plan: WindowPlan) -> WindowSums:
    """The windows from the record script's counts, prefix sums and label
    corrections, with the memory store's arithmetic (the same exact
    fixed-point sums, the same rule for labels that arrived late)."""
    added, c_pos, c_prefix, c_stored, t_pos, t_stored, f_pos, sign, late = reply
    t, tid = event.time_ns, event.transaction_id
    pre = [int(p) for p in c_prefix]  # running sums at the bounds
    own_n, own_sum = (0, 0) if c_stored else (1, to_fixed(event.amount))
    counts: list[int] = []
    sums: list[float] = []
    for lo, h in plan.customer_bounds[1]:
        n = c_pos[h] - c_pos[lo]
        total = pre[h] - pre[lo] - n * AMOUNT_BIAS
        if h == OWN_ROW:  # a read or an unrecorded event counts itself
            n, total = n + own_n, total + own_sum
        counts.append(n)
        sums.append(ldexp(float(total), -64))
    own_t = 0 if t_stored else 1
    rows = plan.terminal_bounds[1]
    t_counts = [t_pos[h] - t_pos[lo] + (own_t if h == OWN_ROW else 0) for lo, h in rows]
    t_frauds = [f_pos[h] - f_pos[lo] for lo, h in rows]
    if late:
        # "<labelled_at>:<time>:<id>": in a window by its event's key.
        keys = [event_key(int(m[21:41]) - _BIAS, int(m[42:]) - _BIAS) for m in late.split()]
        bounds = [time_bound(t - o) for o in plan.terminal_bounds[0]]
        bounds.append(event_key(t, tid) + 1)
        for j, (lo, h) in enumerate(rows):
            lo_key, hi_key = bounds[lo], bounds[h]
            t_frauds[j] += sign * sum(1 for key in keys if lo_key <= key < hi_key)
    return WindowSums(tuple(counts), tuple(sums), tuple(t_counts), tuple(t_frauds), bool(added))
