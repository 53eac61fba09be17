"""Online state for the declared behaviour features (the schema's
`aggregates:`, gendetect.features.aggregates): each key's recent events per
entity (the key columns of the declaration's groups), and fraud labels that
arrive after the transaction.

Entity keys reach a store already hashed (gendetect.features.online_events
turns key values into keyed HMAC digests), so nothing here, in memory, in
the snapshot, in the journal or in Redis, holds a raw id. Times are int
nanoseconds since the epoch (UTC), within int64; transaction ids are int64
too (both checked here before anything changes).

Modules, one job each; imports point one way (memory -> journal, snapshot,
memory_state, memory_key, answer; redis_store -> redis_reply, redis_scripts;
redis_reply -> redis_in_flight, redis_scripts, answer;
answer -> series, plan, model; memory_state -> series, plan, model):
- model: what every store shares: TxEvent, Answer, the StateStore protocol,
  the checks on events and the constants (UNKNOWN_LABEL, AMOUNT_LIMIT,
  DUPLICATE_MESSAGE, the int64 bounds, the composite (time, id) keys);
- plan: a declaration as the stores answer it (AggregatePlan: its entities,
  their horizons and columns, each feature's place in the answer);
- series: one key's events (KeySeries) with exact fixed-point prefix sums
  and sorted fraud labels;
- answer: every declared feature of an event from its keys' series (the
  normative semantics, the same code for both stores);
- memory_state: the memory store's histories, transaction index, recording,
  labels, pruning and idle sweep;
- journal: the write-ahead journal of the memory store (numbered segments,
  fsync, torn-line tolerant reading), its entry format and the durability
  rules of journal and snapshot;
- snapshot: the memory store's snapshot format (encode, decode; older
  formats refused with what to do);
- durable: atomic file replacement and directory fsync;
- memory_key: the memory store's hash-key check (the check file beside the
  snapshot, moving a state aside), also run before the store opens;
- memory: MemoryStateStore, in-process, with snapshot and journal;
- redis_scripts: the Redis store's Lua scripts and their encodings (per key
  the events, their exact prefix sums and fraud lists, server side);
- redis_reply: what a request asks of each key history (its windows'
  bounds) and the answer from the script's reply, O(log history);
- redis_in_flight: previews in flight added to a history's bounds;
- redis_store: RedisStateStore, shared by several replicas, and its
  hash-key check.

The clock (what decides pruning and expiry) cannot be moved by one record:
- each key is pruned by its own newest event time: events at or before
  newest - horizon (its entity's longest window plus delay) are dropped, so
  a record dated a year ahead empties only its own keys' histories;
- an event is recorded in each of its keys' histories that can still hold
  it (time after that key's newest - horizon); one that none can hold is
  answered against what is held but not recorded;
- the transaction-id index (used by late labels and to recognise retries)
  holds exactly the events some history still holds: an entry leaves with
  the last history that prunes it, never because of another key's time;
- keys that go quiet are dropped by the wall-clock time since their own
  last write (horizon plus a day): a periodic sweep (memory store) or key
  expiry (Redis). Never by event time. The server clock decides only when
  an idle key is forgotten, never what a window holds.

Every store records the check value of the hash key its digests were made
with (gendetect.key_check) and refuses to open with another key
(HashKeyChangedError) unless told to start over.
"""

from gendetect.features.state.memory import MemoryStateStore
from gendetect.features.state.model import (
    AMOUNT_LIMIT,
    DUPLICATE_MESSAGE,
    INT64_MAX,
    INT64_MIN,
    UNKNOWN_LABEL,
    Answer,
    StateStore,
    TxEvent,
    check_event,
)
from gendetect.features.state.plan import AggregatePlan
from gendetect.features.state.redis_store import RedisStateStore

__all__ = [
    "AMOUNT_LIMIT",
    "DUPLICATE_MESSAGE",
    "INT64_MAX",
    "INT64_MIN",
    "UNKNOWN_LABEL",
    "AggregatePlan",
    "Answer",
    "MemoryStateStore",
    "RedisStateStore",
    "StateStore",
    "TxEvent",
    "check_event",
]
