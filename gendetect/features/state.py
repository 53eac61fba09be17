"""Online state for the window features: each customer's and terminal's recent
transactions, and fraud labels that arrive after the transaction.

Entity keys reach a store already hashed (gendetect.features.online turns
customer and terminal ids into keyed HMAC digests), so nothing here, in
memory, in the snapshot, in the journal or in Redis, holds a raw id. Times
are int nanoseconds since the epoch (UTC), within int64; transaction ids are
int64 too (both checked here before anything changes).

Window sums (the store answers them; gendetect.features.online only turns
them into features). Per entity the store keeps its events sorted by
(time, transaction id), the order the offline engine breaks ties in. A
customer also keeps running prefix sums of its amounts, appended as its
history grows, so a window's count and amount sum are two binary searches
and a difference. The sums are exact: integers in units of 2**-64 (every
amount of magnitude 2**-12 or more is such a whole number), rounded to a
float once per answer, so no cancellation, order of additions or overflow
can make them drift from the offline engine's (whose own rounding is the
only difference left), however long an entity's history runs. A terminal
keeps its fraud labels' event times (and keys) in sorted lists, so a
window's fraud count is two more binary searches. The one subtle rule of
terminal risk, a label counts only if it had arrived by the request's time
(`labelled_at <= t`), is kept exact like this: labels with
`labelled_at` up to the terminal's newest event time are "applied" (in the
sorted list), later ones wait in a small list ordered by `labelled_at` and
are applied as the terminal's time passes them. A request at or after the
terminal's newest time (the common case) counts the applied labels plus the
waiting ones that arrived by then; an earlier request (an out-of-order
event) subtracts the applied labels that arrived after it, walking them
from the latest back: exact, and slower only for such requests. Events that
arrive out of order are inserted in place, which also rebuilds the
customer's prefix sums from that point: cheap for the usual slightly-late
event, O(history) only for one far older than the customer's newest.
Pruned events leave from the front by moving an offset; the lists are
compacted (and the prefix sums rebased to zero) once the pruned part is
half of them, so memory per entity stays within about twice what its
windows hold, and the cost is amortised O(1).

The Redis store keeps the same things in sorted sets ordered by (time, id)
(times and ids as 20-digit unsigned decimals, so lexicographic order is
numeric order for every int64, 1969 included): a customer's members carry
the exact running prefix sum of its amounts, a terminal's fraud labels sit
in sorted sets of their own (applied by event and by arrival, waiting by
arrival), and the script answers each window bound by counting members
(ZLEXCOUNT) and reading the prefix sum there: O(log n) per bound as well.

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
- entities that go quiet are dropped by a periodic sweep against a robust
  watermark, the median of the last 1,001 recorded event times (memory
  store), or by wall-clock key expiry (Redis); neither is the latest event
  time seen, so a single future-dated record moves neither. Replays of
  historical data work unchanged: nothing here reads the server clock.

Durability of the memory store (with a snapshot path): every record and
label is appended to a journal (one JSON line each, in the order applied,
written through to the operating system before the call returns, so a
process killed with SIGKILL loses nothing it acknowledged). A background
flusher thread fsyncs the journal every `journal_fsync_seconds` (group
fsync: at most that much window history is lost if the machine itself
fails), and `add_label` fsyncs before it returns, so an acknowledged label
survives a power cut too. The journal is split in numbered segments; a
snapshot is written atomically (temporary file, fsync, rename) and records
the first segment it does not contain, and only then are older segments
deleted: a kill between any two steps leaves either the old snapshot and
all segments after it, or the new one and possibly some stale segments it
already contains (skipped and deleted on start), never an entry lost or
applied twice. On start the snapshot is loaded and the later segments are
replayed; a torn line (a write cut short by a crash, never acknowledged) is
skipped. After a failed write the segment is abandoned and the next write
starts a new one, so a torn line is never followed by good ones in a
segment. Snapshot and journal files are created with mode 0600.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from math import ldexp
from pathlib import Path
from statistics import median_low
from typing import Any, NamedTuple, Protocol, TypeVar

import orjson

from gendetect.errors import DuplicateTransactionError, InputError, StateUnavailableError

log = logging.getLogger(__name__)

UNKNOWN_LABEL = -1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Larger amounts are refused: far beyond any payment, and it keeps every
# feature (an average of amounts) finite.
AMOUNT_LIMIT = 1e18
_SNAPSHOT_VERSION = 2
DUPLICATE_MESSAGE = "transaction_id already recorded with different content"

# A window as (start_ns, end_ns): events with time > t - start_ns and either
# time <= t - end_ns, or, when end_ns is None, (time, id) <= the request's own
# (time, id): the same definition as gendetect.features.windows.Window.
Window = tuple[int, int | None]

# Composite (time, id) keys for the fraud-label lists: ordered like the
# events, for any int64 time and id.
_ID_BIAS = 2**63
_SHIFT = 64


def _key(time_ns: int, tx_id: int) -> int:
    return (time_ns << _SHIFT) + (tx_id + _ID_BIAS)


def _time_bound(time_ns: int) -> int:
    """Keys below this are exactly those of events at or before `time_ns`."""
    return (time_ns + 1) << _SHIFT


class TxEvent(NamedTuple):
    # A named tuple: built once per request, several times cheaper than a
    # frozen dataclass.
    transaction_id: int
    time_ns: int
    customer: str  # a keyed digest of the customer id, never the raw id
    terminal: str
    amount: float
    # Hex digest of the whole request record: the same id again with another
    # fingerprint is a conflicting duplicate, with the same one a retry.
    fingerprint: str = ""


@dataclass(frozen=True)
class Horizons:
    """How far back (ns) a customer's / a terminal's events still matter."""

    customer_ns: int
    terminal_ns: int


# A plan's windows as binary-search bounds: the distinct offsets, and per
# window the rows (indices into the offsets, or _OWN: just past the request
# itself) of its start and end.
Bounds = tuple[tuple[int, ...], tuple[tuple[int, int], ...], bool]
_OWN = -1


def bounds_of(windows: Sequence[Window]) -> Bounds:
    """(offsets, rows, whether any window ends at the request itself)."""
    offsets = sorted({w for window in windows for w in window if w is not None})
    row = {w: i for i, w in enumerate(offsets)}
    rows = tuple((row[begin], _OWN if end is None else row[end]) for begin, end in windows)
    return tuple(offsets), rows, any(end is None for _, end in windows)


@dataclass(frozen=True)
class WindowPlan:
    """The windows a store answers, and how much history they need."""

    customer: tuple[Window, ...]
    terminal: tuple[Window, ...]
    horizons: Horizons
    customer_bounds: Bounds = field(init=False, repr=False, compare=False)
    terminal_bounds: Bounds = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once per plan, not per request.
        object.__setattr__(self, "customer_bounds", bounds_of(self.customer))
        object.__setattr__(self, "terminal_bounds", bounds_of(self.terminal))


class WindowSums(NamedTuple):
    """Per window: the customer's transaction count and amount sum, and the
    terminal's transaction count and number of frauds known by the request's
    time; each in the plan's order. The request's own transaction is in the
    windows that include it, recorded or not."""

    customer_counts: tuple[int, ...]
    customer_sums: tuple[float, ...]
    terminal_counts: tuple[int, ...]
    terminal_frauds: tuple[int, ...]
    recorded: bool  # False for a retry, a read, or an event too old to keep


class StateStore(Protocol):
    def record_and_query(
        self, event: TxEvent, plan: WindowPlan, *, record: bool = True
    ) -> WindowSums:
        """Record `event` (if `record`, unless its id is known: a retry),
        prune, and answer the plan's windows for it, in one atomic step.
        Raises DuplicateTransactionError (and changes nothing) if the id is
        known with another fingerprint."""
        ...

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: WindowPlan
    ) -> list[WindowSums]:
        """`record_and_query` for each event in order (later ones see earlier
        ones), after checking them all: if any id is known (or repeated in
        `events`) with another fingerprint, DuplicateTransactionError is
        raised before anything is recorded."""
        ...

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        """Attach a label; False if the transaction is unknown or expired."""
        ...

    def ping(self) -> bool:
        """Whether the store answers; never raises, bounded by its timeout."""
        ...

    def snapshot(self) -> None: ...

    def close(self) -> None: ...


def _check_int64(value: Any, what: str) -> None:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise InputError("must be an integer within 64 bits", field=what)


def check_event(event: TxEvent) -> None:
    """What every store needs of an event before it changes anything: values
    that any later request, the snapshot and the journal can hold."""
    _check_int64(event.transaction_id, "transaction_id")
    _check_int64(event.time_ns, "timestamp")
    if type(event.amount) is not float or not abs(event.amount) <= AMOUNT_LIMIT:
        raise InputError(f"must be a number of magnitude at most {AMOUNT_LIMIT:g}", field="amount")
    for name in ("customer", "terminal", "fingerprint"):
        if type(getattr(event, name)) is not str:
            raise InputError("must be a string", field=name)


# ------------------------------------------------------------- entity series
class _Series:
    """One entity's events sorted by (time, id): parallel lists, live from
    `start` on (pruned events sit before it until the next compaction)."""

    __slots__ = ("ids", "start", "times")

    COMPACT_MIN = 32

    def __init__(self) -> None:
        self.times: list[int] = []
        self.ids: list[int] = []
        self.start = 0

    def __len__(self) -> int:
        return len(self.times) - self.start

    @property
    def newest_time(self) -> int | None:
        return self.times[-1] if len(self.times) > self.start else None

    def _slot(self, time_ns: int, tx_id: int) -> tuple[int, bool]:
        """Index just past the events <= (time, id), and whether the event
        itself is stored (at index - 1)."""
        times, ids = self.times, self.ids
        if times and times[-1] == time_ns and ids[-1] == tx_id:  # just appended
            return len(times), True
        lo = bisect_left(times, time_ns, self.start)
        hi = bisect_right(times, time_ns, lo)
        if lo == hi:
            return lo, False
        j = bisect_right(ids, tx_id, lo, hi)
        return j, j > lo and ids[j - 1] == tx_id

    def _insert_at(self, time_ns: int, tx_id: int) -> int:
        """Insert the (new) event in order; returns its index."""
        times, ids = self.times, self.ids
        if not times or time_ns > times[-1] or (time_ns == times[-1] and tx_id > ids[-1]):
            times.append(time_ns)
            ids.append(tx_id)
            return len(times) - 1
        i, _ = self._slot(time_ns, tx_id)
        times.insert(i, time_ns)
        ids.insert(i, tx_id)
        return i

    def _prune_to(self, cutoff_ns: int) -> int:
        """Drop events at or before `cutoff_ns`; returns the old start."""
        old = self.start
        self.start = bisect_right(self.times, cutoff_ns, old)
        return old

    def _should_compact(self) -> bool:
        return self.start >= self.COMPACT_MIN and 2 * self.start >= len(self.times)


def _fixed(amount: float) -> int:
    """`amount` in units of 2**-64, exact for |amount| >= 2**-12 (else to
    the nearest unit)."""
    return round(math.ldexp(amount, 64))


def _prefix(amounts: list[float]) -> list[int]:
    return list(accumulate(map(_fixed, amounts), initial=0))


class _Customer(_Series):
    __slots__ = ("amounts", "pre")

    def __init__(self) -> None:
        self.times = []
        self.ids = []
        self.start = 0
        self.amounts: list[float] = []
        # pre[i] = exact sum of amounts[:i] (since the last compaction), in
        # units of 2**-64.
        self.pre: list[int] = [0]

    def insert(self, time_ns: int, tx_id: int, amount: float) -> None:
        i = self._insert_at(time_ns, tx_id)
        if i == len(self.amounts):
            self.amounts.append(amount)
            self.pre.append(self.pre[-1] + _fixed(amount))
            return
        self.amounts.insert(i, amount)
        tail = accumulate(map(_fixed, self.amounts[i:]), initial=self.pre[i])
        next(tail)
        del self.pre[i + 1 :]
        self.pre.extend(tail)

    def prune(self, cutoff_ns: int) -> None:
        self._prune_to(cutoff_ns)
        if self._should_compact():
            s = self.start
            del self.times[:s], self.ids[:s], self.amounts[:s]
            self.pre = _prefix(self.amounts)
            self.start = 0

    def window_sums(
        self, time_ns: int, tx_id: int, amount: float, bounds: Bounds
    ) -> tuple[list[int], list[float]]:
        times, pre, start = self.times, self.pre, self.start
        hi_q, stored = self._slot(time_ns, tx_id)
        offsets, rows, _ = bounds
        pos = [bisect_right(times, time_ns - o, start) for o in offsets]
        pos.append(hi_q)  # the last row: just past the request itself
        # A read or an unrecorded event counts itself in the windows it ends.
        # Sums back to floats: float(int) rounds correctly, ldexp is exact.
        own_n, own_sum = (0, 0) if stored else (1, _fixed(amount))
        counts: list[int] = []
        sums: list[float] = []
        for lo_row, hi_row in rows:
            lo, hi = pos[lo_row], pos[hi_row]
            if hi_row == _OWN:
                counts.append(hi - lo + own_n)
                sums.append(ldexp(float(pre[hi] - pre[lo] + own_sum), -64))
            else:
                counts.append(hi - lo)
                sums.append(ldexp(float(pre[hi] - pre[lo]), -64))
        return counts, sums


_Pair = tuple[int, int]  # (labelled_at, key) of a fraud label


class _Terminal(_Series):
    __slots__ = ("fraud_at", "fraud_keys", "fraud_times", "pending")

    def __init__(self) -> None:
        self.times = []
        self.ids = []
        self.start = 0
        # Fraud labels with labelled_at <= newest_time ("applied"): their
        # events' times sorted (what windows bounded by time count, with
        # small-int comparisons), their keys sorted (for a window that ends
        # at the request itself, the (time, id) tie rule), and (labelled_at,
        # key) sorted for out-of-order requests.
        self.fraud_times: list[int] = []
        self.fraud_keys: list[int] = []
        self.fraud_at: list[_Pair] = []
        # Fraud labels that arrived "after" the terminal's newest event.
        self.pending: list[_Pair] = []

    def insert(self, time_ns: int, tx_id: int) -> None:
        self._insert_at(time_ns, tx_id)
        newest = self.times[-1]
        if self.pending and self.pending[0][0] <= newest:
            j = bisect_right(self.pending, (newest, math.inf))
            for pair in self.pending[:j]:
                self._apply(pair)
            del self.pending[:j]

    def _apply(self, pair: _Pair) -> None:
        insort(self.fraud_times, pair[1] >> _SHIFT)
        insort(self.fraud_keys, pair[1])
        insort(self.fraud_at, pair)

    def prune(self, cutoff_ns: int) -> list[int]:
        """Drop events at or before `cutoff_ns`; returns their ids."""
        old = self._prune_to(cutoff_ns)
        gone = self.ids[old : self.start]
        if self._should_compact():
            s = self.start
            del self.times[:s], self.ids[:s]
            self.start = 0
            first = _key(self.times[0], self.ids[0])
            del self.fraud_times[: bisect_left(self.fraud_times, self.times[0])]
            del self.fraud_keys[: bisect_left(self.fraud_keys, first)]
            self.fraud_at = [p for p in self.fraud_at if p[1] >= first]
            self.pending = [p for p in self.pending if p[1] >= first]
        return gone

    def set_fraud(self, key: int, labelled_at_ns: int, fraud: bool, *, was_fraud: bool,
                  was_at: int) -> None:
        newest = self.times[-1]
        if was_fraud:
            old = (was_at, key)
            if was_at <= newest:
                _remove(self.fraud_times, key >> _SHIFT)
                _remove(self.fraud_keys, key)
                _remove(self.fraud_at, old)
            else:
                _remove(self.pending, old)
        if fraud:
            pair = (labelled_at_ns, key)
            if labelled_at_ns <= newest:
                self._apply(pair)
            else:
                insort(self.pending, pair)

    def window_counts(
        self, time_ns: int, tx_id: int, bounds: Bounds
    ) -> tuple[list[int], list[int]]:
        times, start = self.times, self.start
        hi_q, stored = self._slot(time_ns, tx_id)
        pos = [bisect_right(times, time_ns - o, start) for o in bounds[0]]
        pos.append(hi_q)  # the last row: just past the request itself
        return _terminal_answer(
            self, time_ns, tx_id, bounds, pos, stored, (times[start], self.ids[start])
        )


def _terminal_answer(
    labels: _Terminal,
    time_ns: int,
    tx_id: int,
    bounds: Bounds,
    pos: list[int],
    stored: bool,
    first: tuple[int, int],
) -> tuple[list[int], list[int]]:
    """Counts and frauds per window, from the positions of the bounds in the
    terminal's events (`pos`: per offset, then the request's own) and its
    fraud-label lists. `first`: the (time, id) of its first held event;
    `labels.times[-1]`: its newest time. Shared by both stores."""
    offsets, rows, ends_at_request = bounds
    own_n = 0 if stored else 1
    counts = [pos[h] - pos[lo] + (own_n if h == _OWN else 0) for lo, h in rows]
    # Label corrections for this request's time (usually none): waiting
    # labels that arrived by then, or applied ones that arrived after it.
    extra: list[int] = []
    sign = 1
    if time_ns < labels.times[-1]:
        sign = -1
        for at, key in reversed(labels.fraud_at):
            if at <= time_ns:
                break
            extra.append(key)
    else:
        for at, key in labels.pending:
            if at > time_ns:
                break
            extra.append(key)
    fraud_times = labels.fraud_times
    if not fraud_times and not extra:
        return counts, [0] * len(rows)
    # Applied frauds at or before each bound. Labels of pruned events may
    # linger before the first held event until the next compaction (all of
    # them earlier than it): never count them.
    floor = first[0] - 1
    at_or_before = [bisect_right(fraud_times, max(time_ns - o, floor)) for o in offsets]
    first_key = _key(*first)
    if ends_at_request:
        own_key = max(_key(time_ns, tx_id) + 1, first_key)
        at_or_before.append(bisect_left(labels.fraud_keys, own_key))
    frauds = [at_or_before[h] - at_or_before[lo] for lo, h in rows]
    if extra:
        keys = [max(_time_bound(time_ns - o), first_key) for o in offsets]
        keys.append(max(_key(time_ns, tx_id) + 1, first_key))
        for j, (lo, h) in enumerate(rows):
            lo_key, hi_key = keys[lo], keys[h]
            frauds[j] += sign * sum(1 for key in extra if lo_key <= key < hi_key)
    return counts, frauds


_T = TypeVar("_T")


def _remove(items: list[_T], value: _T) -> None:
    i = bisect_left(items, value)  # type: ignore[type-var]
    if i < len(items) and items[i] == value:
        del items[i]


def _check_conflicts(
    events: Sequence[TxEvent], known_fingerprint: Callable[[int], str | None]
) -> None:
    """DuplicateTransactionError if an event's id is known, or earlier in
    `events`, with another fingerprint."""
    batch: dict[int, str] = {}
    for event in events:
        tid = event.transaction_id
        have = batch.get(tid)
        if have is None:
            have = known_fingerprint(tid)
        if have is not None and have != event.fingerprint:
            raise DuplicateTransactionError(DUPLICATE_MESSAGE, field="transaction_id")
        batch.setdefault(tid, event.fingerprint)


def _query(
    customer: _Customer | None,
    terminal: _Terminal | None,
    event: TxEvent,
    plan: WindowPlan,
    recorded: bool,
) -> WindowSums:
    t, tid = event.time_ns, event.transaction_id
    if customer is None:
        c_counts = [1 if end is None else 0 for _, end in plan.customer]
        c_sums = [event.amount if end is None else 0.0 for _, end in plan.customer]
    else:
        c_counts, c_sums = customer.window_sums(t, tid, event.amount, plan.customer_bounds)
    if terminal is None:
        t_counts = [1 if end is None else 0 for _, end in plan.terminal]
        t_frauds = [0] * len(plan.terminal)
    else:
        t_counts, t_frauds = terminal.window_counts(t, tid, plan.terminal_bounds)
    return WindowSums(tuple(c_counts), tuple(c_sums), tuple(t_counts), tuple(t_frauds), recorded)


# --------------------------------------------------------------------- journal
class _Journal:
    """Numbered append-only segments `<snapshot name>.journal.<n>` beside the
    snapshot. Every entry is written through to the OS at once; fsync runs on
    a background thread every `fsync_seconds` and on `sync()`."""

    def __init__(self, snapshot_path: Path, fsync_seconds: float) -> None:
        self.dir = snapshot_path.parent
        self.prefix = f"{snapshot_path.name}.journal."
        self.fsync_seconds = fsync_seconds
        self._lock = threading.Lock()  # fd, seq, dirty; taken after the store's
        self._fd: int | None = None
        self._broken = False
        self._dirty = False
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.dir.glob(self.prefix + "*"):
            suffix = path.name[len(self.prefix) :]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def path_of(self, seq: int) -> Path:
        return self.dir / f"{self.prefix}{seq:010d}"

    def start(self, seq: int) -> None:
        with self._lock:
            self._open(seq)
        self._thread = threading.Thread(target=self._flusher, name="state-journal", daemon=True)
        self._thread.start()

    def _open(self, seq: int) -> None:
        fd = os.open(self.path_of(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fd, self.seq, self._broken, self._dirty = fd, seq, False, False
        _fsync_dir(self.dir)  # the new file's name survives a power cut too

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def write(self, line: bytes) -> None:
        """Append one entry; raises StateUnavailableError (and the caller
        changes nothing) if it could not be written."""
        with self._lock:
            try:
                if self._broken or self._fd is None:
                    # A failed write may have left a torn line: never append
                    # good entries after it, start the next segment instead.
                    self._close_fd_quietly()
                    self._open(self.seq + 1)
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]  # type: ignore[arg-type]
                self._dirty = True
            except OSError as exc:
                self._broken = True
                raise StateUnavailableError("the state journal could not be written") from exc

    def _close_fd_quietly(self) -> None:
        try:
            self._close_fd()
        except OSError:
            self._fd = None

    def sync(self) -> None:
        with self._lock:
            if self._dirty and self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    self._broken = True
                    raise StateUnavailableError("the state journal could not be synced") from exc
                self._dirty = False

    def rotate(self) -> int:
        """Close the current segment (fsynced) and open the next; returns the
        new segment's number: every entry so far is in an earlier one."""
        with self._lock:
            self._close_fd()
            self._open(self.seq + 1)
            return self.seq

    def _flusher(self) -> None:
        while not self._stop.wait(self.fsync_seconds):
            try:
                self.sync()
            except StateUnavailableError:
                log.exception("state journal fsync failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._close_fd()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the file data is synced
    finally:
        os.close(fd)


def _read_segment(path: Path) -> list[list[Any]]:
    """A segment's entries; lines that do not parse are writes cut short by a
    crash or a failed write (never acknowledged): skipped."""
    entries = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line:
            continue
        try:
            entry = orjson.loads(line)
            if not isinstance(entry, list) or entry[0] not in ("r", "l"):
                raise ValueError("not a journal entry")
        except (orjson.JSONDecodeError, ValueError, IndexError):
            log.warning("%s:%d: skipping a torn journal line", path.name, number)
            continue
        entries.append(entry)
    return entries


# --------------------------------------------------------------------- memory
class MemoryStateStore:
    """In-process state for one API process. Thread-safe (one lock).

    With `snapshot_path`, every change is journaled beside it, `snapshot()`
    writes the whole state atomically, and a new store on the same path
    starts from the snapshot plus the journal (see the module docstring).
    """

    # Every this many recorded events, entities that have gone quiet for
    # longer than their horizon (against the robust watermark) are dropped,
    # so the number of entities is bounded too.
    SWEEP_EVERY = 20_000
    WATERMARK_SAMPLE = 1001

    def __init__(
        self,
        snapshot_path: str | os.PathLike[str] | None = None,
        *,
        journal_fsync_seconds: float = 1.0,
    ) -> None:
        self._path = Path(snapshot_path) if snapshot_path is not None else None
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._customers: dict[str, _Customer] = {}
        self._terminals: dict[str, _Terminal] = {}
        # id -> [terminal, time, fingerprint, label, labelled_at]: a list, so
        # that the snapshot serialises it as it is.
        self._tx: dict[int, list[Any]] = {}
        self._recent: deque[int] = deque(maxlen=self.WATERMARK_SAMPLE)
        self._writes = 0
        self._journal: _Journal | None = None
        self._closed = False
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._journal = _Journal(self._path, journal_fsync_seconds)
            self._start_from_disk()

    # ------------------------------------------------------------------ API
    def record_and_query(
        self, event: TxEvent, plan: WindowPlan, *, record: bool = True
    ) -> WindowSums:
        check_event(event)
        with self._lock:
            recorded = False
            if record:
                known = self._tx.get(event.transaction_id)
                if known is not None:
                    if known[2] != event.fingerprint:
                        raise DuplicateTransactionError(DUPLICATE_MESSAGE, field="transaction_id")
                elif self._retains(event, plan.horizons):
                    if self._journal is not None:
                        self._journal.write(_record_line(event, plan.horizons))
                    self._record(event, plan.horizons)
                    recorded = True
            return _query(
                self._customers.get(event.customer),
                self._terminals.get(event.terminal),
                event,
                plan,
                recorded,
            )

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: WindowPlan
    ) -> list[WindowSums]:
        for event in events:
            check_event(event)
        h = plan.horizons
        with self._lock:
            # Conflicts first, and the whole batch in one journal write:
            # applying never fails after that, so a failing batch changes
            # nothing.
            _check_conflicts(events, lambda tid: (e[2] if (e := self._tx.get(tid)) else None))
            if self._journal is not None:
                lines = [_record_line(e, h) for e in events if e.transaction_id not in self._tx]
                if lines:
                    self._journal.write(b"".join(lines))
            out = []
            for event in events:
                recorded = event.transaction_id not in self._tx and self._retains(event, h)
                if recorded:
                    self._record(event, h)
                out.append(
                    _query(
                        self._customers.get(event.customer),
                        self._terminals.get(event.terminal),
                        event,
                        plan,
                        recorded,
                    )
                )
            return out

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        _check_int64(transaction_id, "transaction_id")
        _check_int64(labelled_at_ns, "labelled_at")
        with self._lock:
            if transaction_id not in self._tx:
                return False
            if self._journal is not None:
                line = orjson.dumps(["l", transaction_id, int(bool(is_fraud)), labelled_at_ns])
                self._journal.write(line + b"\n")
            self._label(transaction_id, bool(is_fraud), labelled_at_ns)
        if self._journal is not None:
            # Outside the lock: scoring goes on while the disk syncs. An
            # acknowledged label is on disk (a failed sync answers 503 and
            # posting the label again is harmless).
            self._journal.sync()
        return True

    def lookup(self, transaction_id: int) -> tuple[int, int] | None:
        """(label, labelled_at) of a known transaction (label UNKNOWN_LABEL
        until one arrives), None if unknown or expired."""
        with self._lock:
            entry = self._tx.get(transaction_id)
            return None if entry is None else (entry[3], entry[4])

    def ping(self) -> bool:
        return not self._closed

    def snapshot(self) -> None:
        if self._path is None or self._journal is None:
            raise ValueError("this MemoryStateStore has no snapshot_path")
        with self._snapshot_lock:
            with self._lock:
                # Everything so far goes into the snapshot; later entries go
                # to the new segment, which the snapshot names as its first.
                next_seq = self._journal.rotate()
                payload = self._serialise(next_seq)
                counts = (len(self._customers), len(self._terminals), len(self._tx))
            self._write_atomically(payload)
            for seq, path in self._journal.segments():
                if seq < next_seq:
                    path.unlink(missing_ok=True)
        log.info(
            "state snapshot written: %d customers, %d terminals, %d transactions", *counts
        )

    def close(self) -> None:
        """Write the final snapshot and close the journal. A snapshot that
        cannot be written (a full disk) is logged, not raised: the journal,
        synced here, still holds everything, and shutdown goes on."""
        if self._closed:
            return
        self._closed = True
        if self._journal is None:
            return
        try:
            self.snapshot()
        except OSError:
            log.exception("final state snapshot failed; the journal keeps the state")
        finally:
            self._journal.close()

    def __len__(self) -> int:
        """Number of transactions currently indexed."""
        return len(self._tx)

    # ------------------------------------------------------------- internals
    def _retains(self, event: TxEvent, horizons: Horizons) -> bool:
        terminal = self._terminals.get(event.terminal)
        newest = terminal.newest_time if terminal is not None else None
        return newest is None or event.time_ns > newest - horizons.terminal_ns

    def _record(self, event: TxEvent, horizons: Horizons) -> None:
        """Apply a recorded event (it passed `_retains`). Never raises for a
        checked event: the journal already holds it."""
        t, tid = event.time_ns, event.transaction_id
        customer = self._customers.get(event.customer)
        if customer is None:
            customer = self._customers[event.customer] = _Customer()
        newest = customer.newest_time
        if newest is None or t > newest - horizons.customer_ns:
            customer.insert(t, tid, event.amount)
            customer.prune(max(t, newest if newest is not None else t) - horizons.customer_ns)
        terminal = self._terminals.get(event.terminal)
        if terminal is None:
            terminal = self._terminals[event.terminal] = _Terminal()
        terminal.insert(t, tid)
        self._tx[tid] = [event.terminal, t, event.fingerprint, UNKNOWN_LABEL, 0]
        assert terminal.newest_time is not None
        for gone in terminal.prune(terminal.newest_time - horizons.terminal_ns):
            self._tx.pop(gone, None)
        self._recent.append(t)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            self._sweep(horizons)

    def _label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> None:
        entry = self._tx[transaction_id]
        terminal = self._terminals[entry[0]]
        terminal.set_fraud(
            _key(entry[1], transaction_id),
            labelled_at_ns,
            is_fraud,
            was_fraud=entry[3] == 1,
            was_at=entry[4],
        )
        entry[3], entry[4] = int(is_fraud), labelled_at_ns

    def watermark(self) -> int | None:
        """The robust event-time watermark the idle sweep uses: the median of
        the last WATERMARK_SAMPLE recorded event times."""
        return median_low(self._recent) if self._recent else None

    def _sweep(self, horizons: Horizons) -> None:
        mark = self.watermark()
        if mark is None:
            return
        for entities, horizon in (
            (self._customers, horizons.customer_ns),
            (self._terminals, horizons.terminal_ns),
        ):
            cutoff = mark - horizon
            stale = [
                k for k, s in entities.items() if s.newest_time is None or s.newest_time <= cutoff
            ]
            for key in stale:
                series = entities.pop(key)
                if isinstance(series, _Terminal):
                    for tid in series.ids[series.start :]:
                        self._tx.pop(tid, None)

    # ------------------------------------------------------------ persistence
    def _serialise(self, next_seq: int) -> bytes:
        def columns(s: _Series, *extra: list[Any]) -> list[list[Any]]:
            return [s.times[s.start :], s.ids[s.start :], *(c[s.start :] for c in extra)]

        return orjson.dumps(
            {
                "version": _SNAPSHOT_VERSION,
                "journal_seq": next_seq,
                "writes": self._writes,
                "recent": list(self._recent),
                "customers": {k: columns(c, c.amounts) for k, c in self._customers.items()},
                "terminals": {k: columns(t) for k, t in self._terminals.items()},
                "tx": self._tx,
            },
            option=orjson.OPT_NON_STR_KEYS,
        )

    def _write_atomically(self, payload: bytes) -> None:
        assert self._path is not None
        # Beside the target, then rename: a crash mid-write leaves the
        # previous snapshot intact, never a truncated one.
        tmp = self._path.with_name(f".{self._path.name}.{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
            _fsync_dir(self._path.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def _start_from_disk(self) -> None:
        assert self._path is not None and self._journal is not None
        first_seq = 0
        if self._path.exists():
            first_seq = self._load(self._path)
        replayed = 0
        last_seq = first_seq - 1
        for seq, path in self._journal.segments():
            last_seq = max(last_seq, seq)
            if seq < first_seq:
                path.unlink(missing_ok=True)  # already in the snapshot
                continue
            for entry in _read_segment(path):
                self._replay(entry, path)
                replayed += 1
        if replayed:
            log.info("state journal replayed: %d entries", replayed)
        self._journal.start(last_seq + 1)

    def _replay(self, entry: list[Any], path: Path) -> None:
        try:
            if entry[0] == "r":
                _, tid, t, customer, terminal, amount, fingerprint, h_c, h_t = entry
                event = TxEvent(tid, t, customer, terminal, float(amount), fingerprint)
                check_event(event)
                horizons = Horizons(h_c, h_t)
                # Same decisions as when it was first applied (the state is
                # the same): a repeated id or a too-old event changes nothing.
                if tid not in self._tx and self._retains(event, horizons):
                    self._record(event, horizons)
            else:
                _, tid, label, at = entry
                if tid in self._tx:
                    self._label(tid, bool(label), at)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: skipping a malformed journal entry (%s)", path.name, exc)

    def _load(self, path: Path) -> int:
        raw = orjson.loads(path.read_bytes())
        version = raw.get("version") if isinstance(raw, dict) else None
        if version == 1:
            # The old format holds raw customer and terminal ids, which can
            # neither be matched to keyed digests nor kept: start empty.
            log.warning("%s: old snapshot format with raw ids; starting without it", path)
            return 0
        if version != _SNAPSHOT_VERSION:
            raise ValueError(f"{path}: unsupported state snapshot version {version!r}")
        for key, (times, ids, amounts) in raw["customers"].items():
            c = self._customers[key] = _Customer()
            c.times, c.ids, c.amounts = times, ids, [float(a) for a in amounts]
            c.pre = _prefix(c.amounts)
        for key, (times, ids) in raw["terminals"].items():
            t = self._terminals[key] = _Terminal()
            t.times, t.ids = times, ids
        self._tx = {int(k): v for k, v in raw["tx"].items()}
        for tid, entry in self._tx.items():
            if entry[3] == 1:
                terminal = self._terminals[entry[0]]
                pair = (entry[4], _key(entry[1], tid))
                (terminal.fraud_at if entry[4] <= terminal.times[-1] else terminal.pending).append(
                    pair
                )
        for terminal in self._terminals.values():
            terminal.fraud_at.sort()
            terminal.pending.sort()
            terminal.fraud_keys = sorted(k for _, k in terminal.fraud_at)
            terminal.fraud_times = [k >> _SHIFT for k in terminal.fraud_keys]
        self._writes = raw["writes"]
        self._recent.extend(raw["recent"])
        log.info(
            "state snapshot loaded: %d customers, %d terminals, %d transactions",
            len(self._customers),
            len(self._terminals),
            len(self._tx),
        )
        return int(raw["journal_seq"])


def _record_line(event: TxEvent, horizons: Horizons) -> bytes:
    # The horizons go with the entry: replay must prune exactly as it was.
    return (
        orjson.dumps(
            [
                "r",
                event.transaction_id,
                event.time_ns,
                event.customer,
                event.terminal,
                event.amount,
                event.fingerprint,
                horizons.customer_ns,
                horizons.terminal_ns,
            ]
        )
        + b"\n"
    )


# ---------------------------------------------------------------------- redis
# Times and ids go into Redis as unsigned 20-digit decimals (value + 2**63),
# so that Redis' lexicographic order on sorted-set members is numeric order
# for every int64, before 1970 included (Lua numbers are doubles and cannot
# hold nanosecond times exactly, so the scripts never do arithmetic on them).
_DIGITS = 20
_BIAS = 2**63
_TOP = 10**_DIGITS - 1


def _enc(value: int) -> str:
    """An int64 (or a bound beyond it, clamped) as a sortable string."""
    return f"{min(max(value + _BIAS, 0), _TOP):0{_DIGITS}d}"


def _prune_bound(cutoff_ns: int) -> str:
    """ZRANGEBYLEX max for the members at or before `cutoff_ns` ('' if none
    can be): ':' < ';', so every "<time>:..." member with time <= cutoff sorts
    below "(<cutoff>;"."""
    return "" if cutoff_ns < INT64_MIN else f"({_enc(cutoff_ns)};"


# Added to every amount (in units of 2**-64) in Redis prefix sums: keeps them
# positive (|amount| <= AMOUNT_LIMIT < 2**60).
_U_BIAS = 2**124


def _count_bound(time_ns: int) -> str:
    """ZLEXCOUNT max for the members at or before `time_ns` ('-': none)."""
    return "-" if time_ns < INT64_MIN else f"({_enc(time_ns)};"


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
_RECORD_AND_READ = """
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
_ADD_LABEL = """
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

# Wall-clock expiry of an idle entity's keys, beyond its horizon in event
# time: the sweep for entities that stop transacting (pruning by event time
# only happens when the entity is written), and a clock that no record moves.
_TTL_MARGIN_MS = 86_400_000


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError, OSError)


class RedisStateStore:
    """State in Redis, shared by several API replicas.

    Each request costs one round trip (a Lua script, atomic on the server).
    Keys live under `prefix:`; entity keys hold the (already hashed) entity
    key, never a raw id. The scripts touch per-transaction keys they compute
    themselves, so this needs one Redis instance (not a cluster).

    A call that cannot reach Redis within `socket_timeout` seconds raises
    StateUnavailableError; the client reconnects by itself on the next call.
    Windows are answered on the server by counting members (ZLEXCOUNT) and
    reading running prefix sums at the bounds, O(log n) each; an event older
    than its customer's newest rewrites the later members' prefixes (O(n),
    like the memory store's out-of-order path).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "gendetect",
        *,
        client: Any = None,
        socket_timeout: float = 0.2,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.prefix = prefix
        self._errors = _redis_errors()
        self._redis = (
            client
            if client is not None
            else redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                # One immediate retry on a dropped connection (Redis restarted:
                # the pooled socket is stale), none on a timeout, so a call
                # never waits much longer than the timeout.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        )
        self._record_script = self._redis.register_script(_RECORD_AND_READ)
        self._label_script = self._redis.register_script(_ADD_LABEL)

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except self._errors as exc:
            # No record values in the message: it may reach logs and clients.
            raise StateUnavailableError(
                f"the state store did not answer ({type(exc).__name__})"
            ) from exc

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:
            return False

    def _tx_key(self, transaction_id: int) -> str:
        return f"{self.prefix}:x:{_enc(transaction_id)}"

    def record_and_query(
        self, event: TxEvent, plan: WindowPlan, *, record: bool = True
    ) -> WindowSums:
        check_event(event)
        t, h = event.time_ns, plan.horizons
        keys = [
            f"{self.prefix}:c:{event.customer}",
            f"{self.prefix}:t:{event.terminal}",
            self._tx_key(event.transaction_id),
            f"{self.prefix}:l:{event.terminal}",
            f"{self.prefix}:cb:{event.customer}",
            f"{self.prefix}:fe:{event.terminal}",
            f"{self.prefix}:fa:{event.terminal}",
            f"{self.prefix}:fw:{event.terminal}",
        ]
        args = [
            _enc(event.transaction_id),
            _enc(t),
            repr(event.amount),
            _prune_bound(t - h.customer_ns),
            _prune_bound(t - h.terminal_ns),
            h.customer_ns // 1_000_000 + _TTL_MARGIN_MS,
            h.terminal_ns // 1_000_000 + _TTL_MARGIN_MS,
            "1" if record else "0",
            event.fingerprint,
            _enc(t + h.customer_ns),
            _enc(t + h.terminal_ns),
            f"{self.prefix}:x:",
            event.terminal,
            str(_fixed(event.amount) + _U_BIAS),
        ]
        for offsets in (plan.customer_bounds[0], plan.terminal_bounds[0]):
            args.append(len(offsets))
            args += [_count_bound(t - o) for o in offsets]
        reply = self._call(self._record_script, keys=keys, args=args)
        if reply[0] == -1:
            raise DuplicateTransactionError(DUPLICATE_MESSAGE, field="transaction_id")
        return _answer_from_reply(reply, event, plan)

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: WindowPlan
    ) -> list[WindowSums]:
        """Conflicts are checked for the whole batch first (one read); then
        each event takes its own atomic script. If Redis fails part-way, the
        events before are recorded: sending the same batch again is safe
        (same ids, same fingerprints: retries, counted once)."""
        for event in events:
            check_event(event)
        if not events:
            return []
        keys = [self._tx_key(e.transaction_id) for e in events]
        known = self._call(self._redis.mget, keys=keys)
        fingerprints = {
            e.transaction_id: value.split(b" ")[2].decode()
            for e, value in zip(events, known, strict=True)
            if value is not None
        }
        _check_conflicts(events, fingerprints.get)
        return [self.record_and_query(e, plan) for e in events]

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        _check_int64(transaction_id, "transaction_id")
        _check_int64(labelled_at_ns, "labelled_at")
        args = [
            _enc(transaction_id),
            "1" if is_fraud else "0",
            f"{self.prefix}:",
            _enc(labelled_at_ns),
        ]
        keys = [self._tx_key(transaction_id)]
        return bool(self._call(self._label_script, keys=keys, args=args))

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


def _answer_from_reply(reply: list[Any], event: TxEvent, plan: WindowPlan) -> WindowSums:
    """The windows from the record script's counts, prefix sums and label
    corrections, with the memory store's arithmetic (the same exact
    fixed-point sums, the same rule for labels that arrived late)."""
    added, c_pos, c_prefix, c_stored, t_pos, t_stored, f_pos, sign, late = reply
    t, tid = event.time_ns, event.transaction_id
    pre = [int(p) for p in c_prefix]  # running sums at the bounds
    own_n, own_sum = (0, 0) if c_stored else (1, _fixed(event.amount))
    counts: list[int] = []
    sums: list[float] = []
    for lo, h in plan.customer_bounds[1]:
        n = c_pos[h] - c_pos[lo]
        total = pre[h] - pre[lo] - n * _U_BIAS
        if h == _OWN:  # a read or an unrecorded event counts itself
            n, total = n + own_n, total + own_sum
        counts.append(n)
        sums.append(ldexp(float(total), -64))
    own_t = 0 if t_stored else 1
    rows = plan.terminal_bounds[1]
    t_counts = [t_pos[h] - t_pos[lo] + (own_t if h == _OWN else 0) for lo, h in rows]
    t_frauds = [f_pos[h] - f_pos[lo] for lo, h in rows]
    if late:
        # "<labelled_at>:<time>:<id>": in a window by its event's key.
        keys = [_key(int(m[21:41]) - _BIAS, int(m[42:]) - _BIAS) for m in late.split()]
        bounds = [_time_bound(t - o) for o in plan.terminal_bounds[0]]
        bounds.append(_key(t, tid) + 1)
        for j, (lo, h) in enumerate(rows):
            lo_key, hi_key = bounds[lo], bounds[h]
            t_frauds[j] += sign * sum(1 for key in keys if lo_key <= key < hi_key)
    return WindowSums(tuple(counts), tuple(sums), tuple(t_counts), tuple(t_frauds), bool(added))
