"""RedisStateStore: the online state in Redis, shared by several API
replicas, one Lua script round trip per request.

The keys' layout, the Lua scripts and their encodings are in
gendetect.features.state.redis_scripts.

The clock: a record prunes only its own keys' histories (by its own event
time minus the entity's horizon), and idle keys leave by wall-clock key
expiry (horizon + one day after their last write). Neither depends on other
keys' events, so volume at today's dates never expires a customer replaying
last year's data (the memory store's sweep follows the same rule).

The cost of a request: the script keeps each key's exact prefix sums and
fraud lists server side and returns, per history, what its windows' bounds
need (gendetect.features.state.redis_reply); the client answers with the
memory store's arithmetic (gendetect.features.state.answer.group_features),
so both stores agree exactly, in O(log history) per bound for count, sum,
mean, std, zscore, label_rate, first_seen and since_previous. Groups with
min, max or distinct also get their windows' events (O(window)); previews in
flight are added on the client (gendetect.features.state.redis_in_flight),
O(log history) each. An event recorded out of order rewrites the prefix sums of
the key's later events (O(events after it)).

The hash key: `check_key` records the key's check value (gendetect.key_check)
at `<prefix>:keycheck` (no expiry) and refuses a prefix written with another
key (HashKeyChangedError), or clears it when told to accept the new key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from gendetect.errors import DuplicateTransactionError, StateUnavailableError
from gendetect.features.state.memory_state import parts_of
from gendetect.features.state.model import (
    DUPLICATE_MESSAGE,
    Answer,
    TxEvent,
    check_conflicts,
    check_event,
    check_int64,
)
from gendetect.features.state.plan import AggregatePlan
from gendetect.features.state.redis_reply import (
    BoundsHistory,
    BoundsQuery,
    answer_histories,
    payload,
    sums_delta,
)
from gendetect.features.state.redis_scripts import (
    ADD_LABEL,
    RECORD_AND_READ,
    encode_int,
    prune_bound,
)
from gendetect.key_check import ACCEPT_SETTING, HashKeyChangedError

log = logging.getLogger(__name__)

# The key layout (redis_scripts): 3 keeps per-key prefix sums and fraud
# lists server side; 2 was per-key histories answered from their slices
# (no prefix sums: refused, as its histories would be misread); the fixed
# customer/terminal layout before them had no mark.
LAYOUT = "3"

# Wall-clock expiry of an idle entity's keys, beyond its horizon in event
# time: the sweep for entities that stop transacting (pruning by event time
# only happens when the entity is written), and a clock that no record moves.
_TTL_MARGIN_MS = 86_400_000


_HISTORY_KEYS = ("e", "v", "p", "l", "fe", "fa", "fw")


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
    Each request gets its windows' bounds from the script, O(log history)
    (see the module docstring).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "gendetect",
        *,
        client: Any = None,
        socket_timeout: float = 0.2,
        key_check: str | None = None,
        accept_new_key: bool = False,
    ) -> None:
        """`key_check`: the check value of the hash key the entity digests
        are made with (gendetect.key_check.key_check); see `check_key`.
        Nothing is sent to Redis here: a Redis that is down at start is
        checked at the first call that reaches it."""
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
        self._record_script = self._redis.register_script(RECORD_AND_READ)
        self._label_script = self._redis.register_script(ADD_LABEL)
        self._key_check = key_check
        self._accept_new_key = accept_new_key
        self._key_settled = key_check is None
        self._key_problem: str | None = None
        self._layout_ok = False
        self._key_lock = threading.Lock()

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except self._errors as exc:
            # No record values in the message: it may reach logs and clients.
            raise StateUnavailableError(
                f"the state store did not answer ({type(exc).__name__})"
            ) from exc

    def ping(self) -> bool:
        if self._key_problem is not None:
            return False
        try:
            return bool(self._redis.ping())
        except Exception:
            return False

    def _tx_key(self, transaction_id: int) -> str:
        return f"{self.prefix}:x:{encode_int(transaction_id)}"

    def record_and_query(
        self, event: TxEvent, plan: AggregatePlan, *, record: bool = True,
        extra: Sequence[TxEvent] = (),
    ) -> Answer:
        check_event(event, plan)
        if not self._key_settled or not self._layout_ok:
            self._require_key()
        t = event.time_ns
        keys = [self._tx_key(event.transaction_id)]
        args: list[Any] = [encode_int(event.transaction_id), encode_int(t),
                           "1" if record else "0", event.fingerprint]
        present = [i for i, k in enumerate(event.keys) if k is not None]
        args.append(len(present))
        parts = parts_of(event, plan)
        queries: list[BoundsQuery] = []
        for i, (key, horizon, values, distinct) in zip(present, parts, strict=True):
            keys += [f"{self.prefix}:{kind}:{key}" for kind in _HISTORY_KEYS]
            # Previews in flight that share the key: added on the client.
            mine = [e for e in extra if e.keys[i] == key
                    and e.transaction_id != event.transaction_id]
            query = BoundsQuery(plan, i, event, mine)
            queries.append(query)
            args += [
                horizon // 1_000_000 + _TTL_MARGIN_MS,
                encode_int(t + horizon),
                prune_bound(t - horizon),
                key,
                payload(values, distinct),
                sums_delta(values),
                query.flags, query.lo, query.hi, len(query.bounds), *query.bounds,
            ]
        reply = self._call(self._record_script, keys=keys, args=args)
        if reply[0] == -1:
            raise DuplicateTransactionError(DUPLICATE_MESSAGE, field="transaction_id")
        histories: list[BoundsHistory | None] = [None] * len(event.keys)
        for i, part, query in zip(present, reply[1:], queries, strict=True):
            histories[i] = BoundsHistory(part, query, plan, i, event)
        return Answer(answer_histories(plan, event, histories), bool(reply[0]))

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: AggregatePlan
    ) -> list[Answer]:
        """Conflicts are checked for the whole batch first (one read); then
        each event takes its own atomic script. If Redis fails part-way, the
        events before are recorded: sending the same batch again is safe
        (same ids, same fingerprints: retries, counted once)."""
        for event in events:
            check_event(event, plan)
        if not events:
            return []
        if not self._key_settled or not self._layout_ok:
            self._require_key()
        fingerprints = self.known_fingerprints([e.transaction_id for e in events])
        check_conflicts(events, fingerprints.get)
        return [self.record_and_query(e, plan) for e in events]

    def known_fingerprints(self, transaction_ids: Sequence[int]) -> dict[int, str]:
        if not transaction_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for tid in transaction_ids:
            pipe.hget(self._tx_key(tid), "f")
        known = self._call(pipe.execute)
        return {
            tid: value.decode() if isinstance(value, bytes) else value
            for tid, value in zip(transaction_ids, known, strict=True)
            if value is not None
        }

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        check_int64(transaction_id, "transaction_id")
        check_int64(labelled_at_ns, "labelled_at")
        if not self._key_settled or not self._layout_ok:
            self._require_key()
        args = [encode_int(transaction_id), "1" if is_fraud else "0", f"{self.prefix}:",
                encode_int(labelled_at_ns)]
        keys = [self._tx_key(transaction_id)]
        return bool(self._call(self._label_script, keys=keys, args=args))

    def snapshot(self) -> None:
        """Nothing to do: Redis persists on its own (RDB/AOF)."""

    def check_key(self) -> None:
        """Compare the hash key's check value with the one recorded under the
        prefix: record it if there is none (a new prefix, or state written
        before check values existed: adopted); raise HashKeyChangedError if
        another one is recorded and keys under the prefix hold state, unless
        `accept_new_key`, which clears the prefix first. StateUnavailableError
        if Redis does not answer (checked again at the next call). Replicas
        starting together race safely: the first value set wins and the
        others compare against it. Done once per store."""
        if self._key_settled or self._key_check is None:
            return
        with self._key_lock:
            if not self._key_settled:
                self._settle_key(self._key_check)
                self._key_settled = True

    def _check_layout(self) -> None:
        """Refuse a prefix written in an older layout (marked with another
        layout at `<prefix>:layout`, or unmarked with the keys of the fixed
        customer and terminal histories, `<prefix>:c:` and `<prefix>:t:`):
        its keys would be misread. The layout is recorded at `<prefix>:layout`
        once checked; only a prefix without that mark is scanned, once."""
        name = f"{self.prefix}:layout"
        stored = self._call(self._redis.get, name=name)
        if isinstance(stored, bytes):
            stored = stored.decode()
        if stored == LAYOUT:
            self._layout_ok = True
            return
        old = stored is not None or self._call(self._holds_old_layout)
        if old:
            what = (f"layout {stored}" if stored is not None
                    else "fixed customer and terminal histories")
            self._key_problem = (
                f"the Redis state under the prefix '{self.prefix}:' is in an older layout "
                f"({what}; this version writes layout {LAYOUT}) that it cannot read: clear "
                f"that prefix (or choose another) and start the online state over")
            log.error("%s", self._key_problem)
            raise StateUnavailableError(
                "the online state in Redis is in an older layout (see the server log)")
        self._call(self._redis.set, name=name, value=LAYOUT)
        self._layout_ok = True

    def _holds_old_layout(self) -> bool:
        return any(True for pattern in ("c", "t")
                   for _ in self._redis.scan_iter(match=f"{self.prefix}:{pattern}:*", count=1000))

    def _require_key(self) -> None:
        """The key check before a request's first call: a changed key is a
        503 with the reason (and ping() False) rather than a silent start
        from zero; once known it is not asked again."""
        if self._key_problem is None:
            try:
                self.check_key()
                if not self._layout_ok:
                    self._check_layout()
                return
            except HashKeyChangedError as exc:
                self._key_problem = str(exc)
                log.error("%s", exc)
        # The whole story is in the log; clients get the gist.
        if "older layout" in (self._key_problem or ""):
            raise StateUnavailableError(
                "the online state in Redis is in an older layout (see the server log)")
        raise StateUnavailableError(
            "the online state was written with another hash key (see the server log)")

    def _settle_key(self, key_check: str) -> None:
        name = f"{self.prefix}:keycheck"
        if self._call(self._redis.set, name=name, value=key_check, nx=True):
            return
        stored = self._call(self._redis.get, name=name)
        if isinstance(stored, bytes):  # unless the client decodes replies itself
            stored = stored.decode()
        if stored is None or stored == key_check:
            if stored is None:  # cleared meanwhile: try once more
                self._call(self._redis.set, name=name, value=key_check, nx=True)
            return
        if not self._call(self._holds_state, name=name):
            # Only the check value is left (every entity expired): nothing to
            # orphan, so the new key is simply recorded.
            self._call(self._redis.set, name=name, value=key_check)
            return
        where = f"the Redis state under the prefix '{self.prefix}:'"
        if not self._accept_new_key:
            raise HashKeyChangedError(where, "clear that prefix and start the online state over")
        deleted = self._call(self.clear)
        self._call(self._redis.set, name=name, value=key_check)
        log.warning(
            "THE HASH KEY CHANGED and %s is set: %s was written with the old key and is cleared "
            "(%d keys); every customer and terminal history starts from zero",
            ACCEPT_SETTING, where, deleted,
        )

    def _holds_state(self, name: str) -> bool:
        layout = f"{self.prefix}:layout"
        exempt = (name, name.encode(), layout, layout.encode())
        return any(key not in exempt for key in self._redis.scan_iter(
            match=f"{self.prefix}:*", count=1000))

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
