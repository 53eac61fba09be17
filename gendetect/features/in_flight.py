"""Previewed transactions in flight: events that `OnlineWindowFeatures.preview`
has answered but the store has not recorded yet (gendetect.features.online),
held by key (every entity key of the event) so that concurrent previews
count each other. The store answers with them added (`extra` of
StateStore.record_and_query), exactly as if they were held.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from gendetect.features.state import TxEvent


class InFlight:
    """Events previewed but neither recorded nor discarded yet, by key, for
    the previews of concurrent requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._batches: dict[int, list[TxEvent]] = {}
        self._by_key: defaultdict[str, dict[int, list[TxEvent]]] = defaultdict(dict)

    def add(self, events: list[TxEvent]) -> int:
        with self._lock:
            self._next += 1
            token = self._next
            self._batches[token] = events
            for e in events:
                for key in dict.fromkeys(e.keys):
                    if key is not None:
                        self._by_key[key].setdefault(token, []).append(e)
            return token

    def remove(self, token: int) -> None:
        with self._lock:
            for e in self._batches.pop(token, ()):
                for key in dict.fromkeys(e.keys):
                    entries = self._by_key.get(key) if key is not None else None
                    if entries is not None:
                        entries.pop(token, None)
                        if not entries:
                            del self._by_key[key]

    def near(self, event: TxEvent, token: int) -> list[TxEvent]:
        """In-flight events of other previews that share one of `event`'s
        keys (usually none: the common case costs no lookup at all)."""
        if not self._batches or (len(self._batches) == 1 and token in self._batches):
            return []
        with self._lock:
            out: dict[int, TxEvent] = {}
            for key in event.keys:
                if key is None:
                    continue
                for other, events in self._by_key.get(key, {}).items():
                    if other != token:
                        out.update((id(e), e) for e in events)
            return list(out.values())
