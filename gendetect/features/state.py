"""Online state for the window features: each customer's and terminal's recent
transactions, and fraud labels that arrive after the transaction.

A store keeps, per entity, only the events that can still fall in a window
(the longest window, plus the label delay for terminals): older ones are
pruned whenever the entity is written, so memory per entity is bounded.
It also keeps transaction_id -> (terminal, time) so a late label can find its
transaction; that index expires on the terminal horizon too.

Times are int64 nanoseconds since the epoch (UTC) throughout; entity keys are
strings. The feature arithmetic lives in gendetect.features.windows, not here.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

log = logging.getLogger(__name__)

UNKNOWN_LABEL = -1
_SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class TxEvent:
    transaction_id: int
    time_ns: int
    customer: str
    terminal: str
    amount: float


@dataclass(frozen=True)
class Horizons:
    """How far back (ns) a customer's / a terminal's events still matter."""

    customer_ns: int
    terminal_ns: int


@dataclass(frozen=True)
class CustomerHistory:
    time_ns: np.ndarray  # int64
    tx_id: np.ndarray  # int64
    amount: np.ndarray  # float64


@dataclass(frozen=True)
class TerminalHistory:
    time_ns: np.ndarray  # int64
    tx_id: np.ndarray  # int64
    label: np.ndarray  # int8: 0, 1, or UNKNOWN_LABEL (not arrived)
    labelled_at_ns: np.ndarray  # int64, meaningful where label is known


@dataclass(frozen=True)
class Histories:
    customer: CustomerHistory
    terminal: TerminalHistory
    recorded: bool  # False when the transaction id was already known (a retry)


class StateStore(Protocol):
    def record_and_read(self, event: TxEvent, horizons: Horizons) -> Histories:
        """Record `event` (unless its id is known), prune, and return both
        entities' histories, the event included, in one atomic step."""
        ...

    def read(self, customer: str, terminal: str) -> Histories:
        """The stored histories, without recording anything."""
        ...

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        """Attach a label; False if the transaction is unknown or expired."""
        ...

    def snapshot(self) -> None: ...

    def close(self) -> None: ...


def _cutoff(time_ns: int, horizon_ns: int) -> int:
    """Events at or before this time can no longer be in any window of an
    event at `time_ns` or later (windows are left-open)."""
    return time_ns - horizon_ns


# --------------------------------------------------------------------- memory
class _Series:
    """One entity's events as parallel lists sorted by (time, id): columns
    make the numpy arrays for the kernel cheap to build."""

    __slots__ = ("cols",)

    def __init__(self, n_cols: int, cols: list[list[Any]] | None = None) -> None:
        self.cols: list[list[Any]] = cols if cols is not None else [[] for _ in range(n_cols)]

    def _find(self, time_ns: int, tx_id: int) -> int:
        times, ids = self.cols[0], self.cols[1]
        i = bisect.bisect_left(times, time_ns)
        while i < len(times) and times[i] == time_ns and ids[i] < tx_id:
            i += 1
        return i

    def insert(self, row: tuple[Any, ...]) -> None:
        i = self._find(row[0], row[1])
        for col, value in zip(self.cols, row, strict=True):
            col.insert(i, value)

    def locate(self, time_ns: int, tx_id: int) -> int | None:
        i = self._find(time_ns, tx_id)
        times, ids = self.cols[0], self.cols[1]
        return i if i < len(times) and times[i] == time_ns and ids[i] == tx_id else None

    def prune(self, cutoff_ns: int) -> None:
        i = bisect.bisect_right(self.cols[0], cutoff_ns)
        if i:
            for col in self.cols:
                del col[:i]

    @property
    def last_time(self) -> int | None:
        return self.cols[0][-1] if self.cols[0] else None


def _empty_customer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)


class MemoryStateStore:
    """In-process state for one API process. Thread-safe (one lock).

    With `snapshot_path`, `snapshot()` writes the whole state atomically and
    a new store on the same path starts from it, so a restart loses nothing
    recorded before the last snapshot.
    """

    # Every this many writes, entities that have gone quiet for longer than
    # their horizon are dropped, so the number of entities is bounded too.
    SWEEP_EVERY = 20_000

    def __init__(self, snapshot_path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(snapshot_path) if snapshot_path is not None else None
        self._lock = threading.Lock()
        self._customers: dict[str, _Series] = {}  # time, id, amount
        self._terminals: dict[str, _Series] = {}  # time, id, label, labelled_at
        self._tx: dict[int, tuple[str, int]] = {}  # id -> (terminal, time)
        self._tx_expiry: list[tuple[int, int]] = []  # heap of (time, id)
        self._writes = 0
        self._clock = None  # latest event time seen
        if self._path is not None and self._path.exists():
            self._load(self._path)

    # ------------------------------------------------------------------ API
    def record_and_read(self, event: TxEvent, horizons: Horizons) -> Histories:
        with self._lock:
            recorded = event.transaction_id not in self._tx
            if recorded:
                self._record(event, horizons)
            return self._read(event.customer, event.terminal, recorded)

    def read(self, customer: str, terminal: str) -> Histories:
        with self._lock:
            return self._read(customer, terminal, recorded=False)

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        with self._lock:
            known = self._tx.get(transaction_id)
            if known is None:
                return False
            terminal, time_ns = known
            series = self._terminals.get(terminal)
            i = series.locate(time_ns, transaction_id) if series is not None else None
            if series is None or i is None:
                return False
            series.cols[2][i] = int(bool(is_fraud))
            series.cols[3][i] = labelled_at_ns
            return True

    def snapshot(self) -> None:
        if self._path is None:
            raise ValueError("this MemoryStateStore has no snapshot_path")
        with self._lock:
            payload = orjson.dumps(
                {
                    "version": _SNAPSHOT_VERSION,
                    "clock": self._clock,
                    "customers": {k: s.cols for k, s in self._customers.items()},
                    "terminals": {k: s.cols for k, s in self._terminals.items()},
                    "tx": {str(k): v for k, v in self._tx.items()},
                }
            )
        # Write beside the target and rename: a crash mid-write leaves the
        # previous snapshot intact, never a truncated one.
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
        finally:
            tmp.unlink(missing_ok=True)
        log.info(
            "state snapshot written: %d customers, %d terminals, %d transactions",
            len(self._customers),
            len(self._terminals),
            len(self._tx),
        )

    def close(self) -> None:
        if self._path is not None:
            self.snapshot()

    def __len__(self) -> int:
        """Number of transactions currently indexed."""
        return len(self._tx)

    # ------------------------------------------------------------- internals
    def _record(self, event: TxEvent, horizons: Horizons) -> None:
        t, tid = event.time_ns, event.transaction_id
        customer = self._customers.setdefault(event.customer, _Series(3))
        customer.insert((t, tid, event.amount))
        customer.prune(_cutoff(t, horizons.customer_ns))
        terminal = self._terminals.setdefault(event.terminal, _Series(4))
        terminal.insert((t, tid, UNKNOWN_LABEL, 0))
        terminal.prune(_cutoff(t, horizons.terminal_ns))
        self._tx[tid] = (event.terminal, t)
        heapq.heappush(self._tx_expiry, (t, tid))
        tx_cutoff = _cutoff(t, horizons.terminal_ns)
        while self._tx_expiry and self._tx_expiry[0][0] <= tx_cutoff:
            _, old = heapq.heappop(self._tx_expiry)
            self._tx.pop(old, None)
        self._clock = t if self._clock is None else max(self._clock, t)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            self._sweep(horizons)

    def _sweep(self, horizons: Horizons) -> None:
        assert self._clock is not None
        for entities, horizon in (
            (self._customers, horizons.customer_ns),
            (self._terminals, horizons.terminal_ns),
        ):
            cutoff = _cutoff(self._clock, horizon)
            stale = [k for k, s in entities.items() if s.last_time is None or s.last_time <= cutoff]
            for key in stale:
                del entities[key]

    def _read(self, customer: str, terminal: str, recorded: bool) -> Histories:
        c = self._customers.get(customer)
        if c is None:
            c_arrays = _empty_customer()
        else:
            c_arrays = (
                np.array(c.cols[0], np.int64),
                np.array(c.cols[1], np.int64),
                np.array(c.cols[2], np.float64),
            )
        t = self._terminals.get(terminal)
        cols = t.cols if t is not None else [[], [], [], []]
        return Histories(
            customer=CustomerHistory(*c_arrays),
            terminal=TerminalHistory(
                np.array(cols[0], np.int64),
                np.array(cols[1], np.int64),
                np.array(cols[2], np.int8),
                np.array(cols[3], np.int64),
            ),
            recorded=recorded,
        )

    def _load(self, path: Path) -> None:
        raw = orjson.loads(path.read_bytes())
        if raw.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"{path}: unsupported state snapshot version {raw.get('version')!r}")
        self._clock = raw["clock"]
        self._customers = {k: _Series(3, cols) for k, cols in raw["customers"].items()}
        self._terminals = {k: _Series(4, cols) for k, cols in raw["terminals"].items()}
        self._tx = {int(k): (v[0], v[1]) for k, v in raw["tx"].items()}
        self._tx_expiry = [(t, tid) for tid, (_, t) in self._tx.items()]
        heapq.heapify(self._tx_expiry)
        log.info(
            "state snapshot loaded: %d customers, %d terminals, %d transactions",
            len(self._customers),
            len(self._terminals),
            len(self._tx),
        )


# ---------------------------------------------------------------------- redis
# Time strings are zero-padded to 19 digits so that Redis' lexicographic order
# on sorted-set members is time order (Lua numbers are doubles and cannot hold
# nanosecond times exactly, so the scripts never do arithmetic on them).
_TIME_DIGITS = 19

# One round trip per request: record (unless the id is known), prune, return
# both histories and the labels of the terminal's events.
# KEYS: customer zset, terminal zset, tx hash, tx expiry zset, labels hash.
# ARGV: id, time, amount, customer cutoff, terminal cutoff (time strings, ''
#       for none), customer ttl ms, terminal ttl ms, record flag.
_RECORD_AND_READ = """
local id, t = ARGV[1], ARGV[2]
local added = 0
if ARGV[8] == '1' and redis.call('HSETNX', KEYS[3], id, t) == 1 then
  redis.call('ZADD', KEYS[1], 0, t .. ':' .. id .. ':' .. ARGV[3])
  redis.call('ZADD', KEYS[2], 0, t .. ':' .. id)
  redis.call('ZADD', KEYS[4], 0, t .. ':' .. id)
  added = 1
end
local function ids_of(members)
  local out = {}
  for i, m in ipairs(members) do out[i] = string.sub(m, __ID_START__) end
  return out
end
local function chunked(cmd, key, args)
  local out = {}
  for i = 1, #args, 1000 do
    local part = redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
    if type(part) == 'table' then
      for _, v in ipairs(part) do out[#out + 1] = v end
    end
  end
  return out
end
if added == 1 then
  if ARGV[4] ~= '' then redis.call('ZREMRANGEBYLEX', KEYS[1], '-', '(' .. ARGV[4] .. ';') end
  if ARGV[5] ~= '' then
    redis.call('ZREMRANGEBYLEX', KEYS[2], '-', '(' .. ARGV[5] .. ';')
    local old = redis.call('ZRANGEBYLEX', KEYS[4], '-', '(' .. ARGV[5] .. ';', 'LIMIT', 0, 1000)
    if #old > 0 then
      local ids = ids_of(old)
      chunked('HDEL', KEYS[3], ids)
      chunked('HDEL', KEYS[5], ids)
      chunked('ZREM', KEYS[4], old)
    end
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
local customer = redis.call('ZRANGE', KEYS[1], 0, -1)
local terminal = redis.call('ZRANGE', KEYS[2], 0, -1)
local labels = {}
if #terminal > 0 then
  local ids = ids_of(terminal)
  for i = 1, #ids, 1000 do
    local part = redis.call('HMGET', KEYS[5], unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #part do
      labels[#labels + 1] = part[j] or '-'
    end
  end
end
-- One string per list: far cheaper for the client to parse than hundreds
-- of separate replies.
return {added, table.concat(customer, ' '), table.concat(terminal, ' '),
        table.concat(labels, ' ')}
""".replace("__ID_START__", str(_TIME_DIGITS + 2))

# KEYS: tx hash, labels hash. ARGV: id, "label:labelled_at".
_ADD_LABEL = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Wall-clock expiry of an idle entity's keys, beyond its horizon in event
# time: a safety net for entities that stop transacting (pruning by event
# time only happens when the entity is written).
_TTL_MARGIN_MS = 86_400_000


def _time_str(time_ns: int) -> str:
    if not 0 <= time_ns < 10**_TIME_DIGITS:
        raise ValueError("the Redis state store needs times at or after 1970-01-01")
    return f"{time_ns:0{_TIME_DIGITS}d}"


def _entity_digest(key: str) -> str:
    # Customer and terminal ids are personal data: keep them out of the key
    # space (visible in MONITOR, SLOWLOG, key dumps).
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


class RedisStateStore:
    """State in Redis, shared by several API replicas.

    Each request costs one round trip (a Lua script, atomic on the server).
    Keys live under `prefix:`; entity keys hold a digest of the id, not the id.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "gendetect",
        *,
        client: Any = None,
        socket_timeout: float = 2.0,
    ) -> None:
        import redis  # optional at import time: only this store needs it

        self.prefix = prefix
        self._redis = (
            client
            if client is not None
            else redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        )
        self._record_script = self._redis.register_script(_RECORD_AND_READ)
        self._label_script = self._redis.register_script(_ADD_LABEL)
        self._tx_key = f"{prefix}:tx"
        self._tx_expiry_key = f"{prefix}:txz"
        self._labels_key = f"{prefix}:lab"

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def _keys(self, customer: str, terminal: str) -> list[str]:
        return [
            f"{self.prefix}:c:{_entity_digest(customer)}",
            f"{self.prefix}:t:{_entity_digest(terminal)}",
            self._tx_key,
            self._tx_expiry_key,
            self._labels_key,
        ]

    def record_and_read(self, event: TxEvent, horizons: Horizons) -> Histories:
        c_cut = _cutoff(event.time_ns, horizons.customer_ns)
        t_cut = _cutoff(event.time_ns, horizons.terminal_ns)
        args = [
            event.transaction_id,
            _time_str(event.time_ns),
            repr(float(event.amount)),
            _time_str(c_cut) if c_cut >= 0 else "",
            _time_str(t_cut) if t_cut >= 0 else "",
            horizons.customer_ns // 1_000_000 + _TTL_MARGIN_MS,
            horizons.terminal_ns // 1_000_000 + _TTL_MARGIN_MS,
            "1",
        ]
        reply = self._record_script(keys=self._keys(event.customer, event.terminal), args=args)
        return _parse_histories(reply)

    def read(self, customer: str, terminal: str) -> Histories:
        args = ["0", "0", "0", "", "", 0, 0, "0"]
        return _parse_histories(self._record_script(keys=self._keys(customer, terminal), args=args))

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        value = f"{int(bool(is_fraud))}:{_time_str(max(labelled_at_ns, 0))}"
        keys = [self._tx_key, self._labels_key]
        return bool(self._label_script(keys=keys, args=[transaction_id, value]))

    def snapshot(self) -> None:
        """Nothing to do: Redis persists on its own (RDB/AOF)."""

    def close(self) -> None:
        self._redis.close()

    def clear(self) -> int:
        """Delete every key under this store's prefix; returns how many."""
        deleted = 0
        batch: list[bytes] = []
        for key in self._redis.scan_iter(match=f"{self.prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += self._redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += self._redis.unlink(*batch)
        return deleted


def _parse_histories(reply: list[Any]) -> Histories:
    """Members come as space-separated "time:id[:amount]" strings; labels as
    "label:labelled_at" or "-" (not arrived), aligned with the terminal's."""
    added, customer, terminal, labels = reply
    c = customer.replace(b":", b" ").split()
    t = terminal.replace(b":", b" ").split()
    label_values = labels.split()
    known = [v != b"-" for v in label_values]
    return Histories(
        customer=CustomerHistory(
            np.array([int(v) for v in c[0::3]], np.int64),
            np.array([int(v) for v in c[1::3]], np.int64),
            np.array([float(v) for v in c[2::3]], np.float64),
        ),
        terminal=TerminalHistory(
            np.array([int(v) for v in t[0::2]], np.int64),
            np.array([int(v) for v in t[1::2]], np.int64),
            np.array(
                [
                    int(v[:1]) if k else UNKNOWN_LABEL
                    for v, k in zip(label_values, known, strict=True)
                ],
                np.int8,
            ),
            np.array(
                [int(v[2:]) if k else 0 for v, k in zip(label_values, known, strict=True)],
                np.int64,
            ),
        ),
        recorded=bool(added),
    )
