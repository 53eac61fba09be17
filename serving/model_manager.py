"""Which model the API serves, and swapping it without dropping requests.

Everything a request needs from the model (the bundle, the request models
generated from its schema, the online feature state, the registry
reference) lives in one immutable `ServedModel`. A request takes the current
one at its start and uses it to the end; a reload builds the next one in a
worker thread while requests keep flowing, then replaces the reference in a
single assignment. Old requests finish on the old model, new ones start on
the new one, and no request ever sees half of each.

Only registry URIs (`models:/name@alias`, `models:/name/version`) are served:
`gendetect.tracking` refuses anything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from gendetect.errors import ModelNotReadyError
from serving.metrics import Metrics
from serving.request_models import build_batch_model, build_record_model
from serving.settings import ServingSettings
from serving.warmup import freeze_heap, warm_up

if TYPE_CHECKING:
    from gendetect.bundle import FraudModelBundle
    from gendetect.tracking import RegisteredModel
    from serving.online_state import OnlineState

log = logging.getLogger("gendetect.serving")

# The longest /readyz waits for the registry helper's first check (about 5 s
# of CPU on a 2-core machine); past it the server is ready and the check
# goes on in the helper.
POLLER_START_LIMIT = 60


@dataclass(frozen=True)
class ServedModel:
    bundle: FraudModelBundle
    ref: RegisteredModel
    record_model: type[BaseModel]
    batch_model: type[BaseModel]
    online: OnlineState | None
    id_field: str | None
    loaded_at: datetime
    trained_at: str | None

    @property
    def model_ref(self) -> dict[str, str]:
        return {"name": self.ref.name, "version": self.ref.version}


@dataclass(frozen=True)
class ReloadOutcome:
    changed: bool
    previous: str | None
    current: str


@dataclass(frozen=True)
class AliasCheck:
    """What the registry said at the last check: whether the served version
    still holds the alias of the URI the service follows."""

    holds: bool
    checked_at: datetime


class ModelManager:
    def __init__(self, settings: ServingSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self._reload_lock = asyncio.Lock()
        self.alias_check: AliasCheck | None = None
        # One state store for the process, shared by successive models: the
        # behaviour history belongs to the customers, not to a model version.
        self._online: OnlineState | None = None
        # True while the registry helper's first check runs (follow_registry):
        # not ready then, so that its seconds of CPU are spent before traffic.
        self.poller_starting = False

    @property
    def ready(self) -> bool:
        return self.current is not None and not self.poller_starting

    def current_version(self) -> str:
        served = self.current
        return served.ref.version if served is not None else "-"

    def require(self) -> ServedModel:
        served = self.current
        if served is None:
            raise ModelNotReadyError(self.last_error or "no model loaded yet")
        return served

    async def reload(self, *, force: bool = False) -> ReloadOutcome:
        """Load what the configured URI points at now (e.g. after the
        champion alias moved) and swap it in. Unless `force`, a version that
        is already served is not loaded again."""
        async with self._reload_lock:
            previous = self.current
            try:
                served = await asyncio.to_thread(self._load, previous, force)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.metrics.reload_attempt("error")
                if previous is not None:
                    # Still serving `previous`, which no longer holds the
                    # alias (it moved to a version that does not load, or
                    # was removed): /v1/model must not claim it does.
                    self.alias_check = AliasCheck(False, datetime.now(UTC))
                raise
            if served is None:
                assert previous is not None
                self.metrics.reload_attempt("unchanged")
                self.alias_check = AliasCheck(True, datetime.now(UTC))
                return ReloadOutcome(False, previous.ref.version, previous.ref.version)
            self.current = served  # the swap: one reference assignment
            self.alias_check = AliasCheck(True, datetime.now(UTC))
            self.last_error = None
            self.metrics.reload_attempt("loaded")
            self.metrics.model_loaded(served.ref.name, served.ref.version)
            log.info(
                "serving model %s version %s (alias %s)",
                served.ref.name,
                served.ref.version,
                served.ref.alias,
            )
            return ReloadOutcome(
                True, previous.ref.version if previous else None, served.ref.version
            )

    async def load_until_ready(self, retry_seconds: float = 2.0) -> None:
        """Startup: keep trying until the registry has a model (a fresh
        deployment may start before the first training run registers one)."""
        reported = None
        while self.current is None:
            try:
                await self.reload()
            except Exception as exc:  # reported by /readyz; retried
                message = f"{type(exc).__name__}: {exc}"
                if message != reported:  # once per distinct problem, not every retry
                    # Not only "no model registered": loading the state
                    # store or the bundle can fail too, so the type is shown.
                    log.warning("model not ready (%s); retrying every %.0f s", message,
                                retry_seconds)
                    reported = message
                await asyncio.sleep(retry_seconds)

    async def follow_registry(self, interval_seconds: float) -> None:
        """Poll the registry and swap to what the URI points at now, so that
        a moved alias is served without anyone calling /v1/model/reload.
        The poll runs in a helper process (serving.registry_poll): only a
        changed version (or a failed check, to record why) costs this
        process anything. Failures keep the current model and are retried on
        the next tick."""
        from serving.registry_poll import RegistryPoller

        poller = RegistryPoller(self.settings)
        reported = None
        try:
            # The helper's costly first check now, while the model loads and
            # before /readyz says ready (serving.registry_poll), not at the
            # first tick amid traffic; at most POLLER_START_LIMIT seconds.
            self.poller_starting = True
            try:
                await asyncio.wait_for(poller.start(), POLLER_START_LIMIT)
            except TimeoutError:
                log.warning("the registry helper's first check took over %d s; ready without it",
                            POLLER_START_LIMIT)
            finally:
                self.poller_starting = False
            while True:
                await asyncio.sleep(interval_seconds)
                served = self.current
                if served is None:
                    continue  # load_until_ready is still at it
                try:
                    name, version = await poller.resolve()
                except ModelNotReadyError as exc:  # the registry's answer
                    self._poll_failed(served, exc)
                    reported = self._warn_once(served, exc, reported)
                    continue
                except Exception:
                    # The helper itself failed: ask from here this time.
                    name, version = "", ""
                if (name, version) == (served.ref.name, served.ref.version):
                    self.metrics.reload_attempt("unchanged")
                    self.alias_check = AliasCheck(True, datetime.now(UTC))
                    reported = None
                    continue
                try:
                    await self.reload()  # records its outcome itself
                    reported = None
                except Exception as exc:
                    reported = self._warn_once(served, exc, reported)
        finally:
            poller.close()

    @staticmethod
    def _warn_once(served: ServedModel, exc: Exception, reported: str | None) -> str:
        message = f"{type(exc).__name__}: {exc}"
        if message != reported:
            log.warning("registry check failed, still serving version %s: %s",
                        served.ref.version, exc)
        return message

    def _poll_failed(self, served: ServedModel, exc: Exception) -> None:
        """What reload() records when the alias cannot be resolved: still
        serving `served`, which no longer holds the alias (/v1/model says so)."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.metrics.reload_attempt("error")
        if self.current is served:
            self.alias_check = AliasCheck(False, datetime.now(UTC))

    def close(self) -> None:
        if self._online is not None:
            self._online.close()

    # -------------------------------------------------------------- loading
    def _load(self, previous: ServedModel | None, force: bool) -> ServedModel | None:
        from gendetect import tracking

        uri = self.settings.resolved_model_uri
        if previous is not None and not force:
            ref = tracking.resolve(uri, self.settings)
            if ref.name == previous.ref.name and ref.version == previous.ref.version:
                return None
        started = time.perf_counter()
        bundle, ref = tracking.load_registered_bundle(uri, self.settings)
        if not bundle.is_fitted:
            raise ModelNotReadyError(f"{uri} holds an unfitted bundle")
        record_model = build_record_model(
            bundle.schema, max_skew_seconds=self.settings.max_clock_skew_seconds
        )
        online = self._online_for(bundle)
        served = ServedModel(
            bundle=bundle,
            ref=ref,
            record_model=record_model,
            batch_model=build_batch_model(record_model, self.settings.max_batch_size),
            online=online,
            id_field=next((f.name for f in bundle.schema.fields if f.kind == "id"), None),
            loaded_at=datetime.now(UTC),
            trained_at=_trained_at(bundle, ref, self.settings),
        )
        warm_up(served.bundle, served.online is not None)
        freeze_heap(first_load=previous is None)
        log.info(
            "loaded %s version %s in %.2f s", ref.name, ref.version, time.perf_counter() - started
        )
        return served

    def _online_for(self, bundle: FraudModelBundle) -> OnlineState | None:
        config = bundle.pipeline.behaviour if bundle.pipeline is not None else None
        if config is None:
            return None
        from serving.online_state import OnlineState

        if self._online is None:
            self._online = OnlineState.create(config, self.settings)
        elif self._online.config != config:
            self._online = self._online.with_config(config)
        return self._online


def _trained_at(bundle: FraudModelBundle, ref: RegisteredModel,
                settings: ServingSettings) -> str | None:
    stamp = bundle.metadata.get("trained_at")
    if stamp:
        return str(stamp)
    if ref.run_id is None:
        return None
    try:
        from gendetect import tracking

        run = tracking.configure(settings).get_run(ref.run_id)
    except Exception:  # informational only; never block serving on it
        return None
    millis = run.info.end_time or run.info.start_time
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat() if millis else None
