"""Online state for the window features: each customer's and terminal's recent
transactions, and fraud labels that arrive after the transaction.

Entity keys reach a store already hashed (gendetect.features.online turns
customer and terminal ids into keyed HMAC digests), so nothing here, in
memory, in the snapshot, in the journal or in Redis, holds a raw id. Times
are int nanoseconds since the epoch (UTC), within int64; transaction ids are
int64 too (both checked here before anything changes).

Modules, one job each; imports point one way (memory -> journal, snapshot,
memory_key, series, model; redis_store -> redis_scripts, series, model;
redis_scripts -> series, model; snapshot -> series, model; journal,
snapshot, memory_key -> durable; journal, series -> model):
- model: what every store shares: TxEvent, Horizons, WindowPlan,
  WindowSums, the StateStore protocol, the checks on events and the
  constants (UNKNOWN_LABEL, AMOUNT_LIMIT, DUPLICATE_MESSAGE, the int64 bounds,
  the composite (time, id) keys: event_key, time_bound, KEY_SHIFT);
- series: one entity's events (Series, CustomerSeries, TerminalSeries), the
  exact fixed-point sums (to_fixed, prefix_sums), and the window answers
  computed from them (query_windows);
- journal: the write-ahead journal of the memory store (numbered segments,
  fsync, torn-line tolerant reading), its entry format and the durability
  rules of journal and snapshot;
- snapshot: the memory store's snapshot format (encode, decode);
- durable: atomic file replacement and directory fsync;
- memory_key: the memory store's hash-key check (the check file beside the
  snapshot, moving a state aside), also run before the store opens;
- memory: MemoryStateStore, in-process, with snapshot and journal;
- redis_scripts: the Redis store's Lua scripts, their sortable encodings
  and the decoding of their replies;
- redis_store: RedisStateStore, shared by several replicas, and its
  hash-key check.

The clock (what decides pruning and expiry) cannot be moved by one record:
- each entity is pruned by its own newest event time: events at or before
  newest - horizon (the longest window; for terminals plus the label delay)
  are dropped, so a record dated a year ahead empties only its own customer's
  and terminal's history;
- the transaction-id index (used by late labels and to recognise retries)
  holds exactly the events its terminal still holds: entries leave with
  their terminal's pruning, never because of another terminal's time;
- an event that its terminal can no longer hold (at or before the terminal's
  newest time - horizon) is scored against what is held but not recorded
  (in neither entity), so the index and both histories stay consistent;
- entities that go quiet are dropped by the wall-clock time since their own
  last write (horizon plus a day): a periodic sweep (memory store) or key
  expiry (Redis). Never by event time: neither a future-dated record nor any
  volume of other entities' records at today's dates drops an entity whose
  events are older (a replay of last year's data keeps its windows). The
  server clock decides only when an idle entity is forgotten, never what a
  window holds.

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
    Bounds,
    Horizons,
    StateStore,
    TxEvent,
    WindowPlan,
    WindowSums,
    bounds_of,
    check_event,
)
from gendetect.features.state.redis_store import RedisStateStore

__all__ = [
    "AMOUNT_LIMIT",
    "DUPLICATE_MESSAGE",
    "INT64_MAX",
    "INT64_MIN",
    "UNKNOWN_LABEL",
    "Bounds",
    "Horizons",
    "MemoryStateStore",
    "RedisStateStore",
    "StateStore",
    "TxEvent",
    "WindowPlan",
    "WindowSums",
    "bounds_of",
    "check_event",
]
