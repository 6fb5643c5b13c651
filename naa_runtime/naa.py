"""One software NAA: the state machine (Idle/Flashing/Ready/Error), the loaded kernels, the
emulated sensors, and the data plane they serve.

`naa_runtime.cli serve` builds a `SoftwareNAA` and hands it to the management HTTP server
(`naa_runtime.management`), which calls `flash`, `scrub`, `health`, `identity` and `sensors`.
The data plane (RPC server) calls `lookup` for every RPC and reports to `observer`. The
decisions (`decide_flash`, `decide_scrub`) are pure and tested without I/O.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from naa_runtime.bitstream import (
    BitstreamError,
    check_digest,
    fetch_artifact,
    parse_bitstream,
    verify_digest,
)
from naa_runtime.kernels.base import ActivityObserver, Kernel, KernelLookup
from naa_runtime.kernels.registry import (
    EMPTY_BINDING,
    TEST_FUNCTIONS,
    KernelBinding,
    KernelRegistry,
    RegistryError,
)
from naa_runtime.sensors import ActivityAccumulator, PowerModel, Sample, SensorSampler

log = logging.getLogger(__name__)


class NAAState(enum.StrEnum):
    IDLE = "Idle"
    FLASHING = "Flashing"
    READY = "Ready"
    ERROR = "Error"


class FlashDecision(enum.Enum):
    START = "start"
    ALREADY_LOADED = "already-loaded"
    ALREADY_FLASHING = "already-flashing"
    REFUSE_FLASHING_OTHER = "refuse-flashing-other"
    REFUSE_CONNECTIONS = "refuse-connections"


class ScrubDecision(enum.Enum):
    SCRUB = "scrub"
    RESET_TO_IDLE = "reset-to-idle"
    REFUSE_FLASHING = "refuse-flashing"


def decide_flash(
    *,
    state: NAAState,
    loaded_digest: str | None,
    target_digest: str | None,
    requested_digest: str,
    active_connections: int,
    force: bool,
) -> FlashDecision:
    """What a flash request does. Idempotent by digest: the loaded digest is not flashed
    again and a flash of the same digest in progress is joined, whatever `force` says."""
    if state is NAAState.FLASHING:
        if target_digest == requested_digest:
            return FlashDecision.ALREADY_FLASHING
        return FlashDecision.REFUSE_FLASHING_OTHER
    if state is NAAState.READY and loaded_digest == requested_digest:
        return FlashDecision.ALREADY_LOADED
    if active_connections > 0 and not force:
        return FlashDecision.REFUSE_CONNECTIONS
    return FlashDecision.START


def decide_scrub(*, state: NAAState) -> ScrubDecision:
    """What a scrub request does: an Error NAA is reset to the unflashed shell (Idle). Open
    connections do not stop a scrub: they hold the memory regions it must clear (the operator
    scrubs when a job's NAAs are released, so any connection left is stale)."""
    if state is NAAState.FLASHING:
        return ScrubDecision.REFUSE_FLASHING
    if state is NAAState.ERROR:
        return ScrubDecision.RESET_TO_IDLE
    return ScrubDecision.SCRUB


class NAAError(Exception):
    """An operation the management plane refuses; `code` and `status` map it to HTTP."""

    code = "naa-error"
    status = 500


class ConflictError(NAAError):
    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class FlashFailedError(NAAError):
    """Flashing failed; the NAA is now in state Error with the same reason."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class DataPlane(Protocol):
    """What the NAA needs from its RPC server."""

    @property
    def active_connections(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def disconnect_all(self) -> None: ...


DataPlaneFactory = Callable[[KernelLookup, ActivityObserver], DataPlane]


@dataclass(frozen=True)
class BoardIdentity:
    """What `/v1/identity` reports. The defaults emulate an AMD Alveo U55C (public datasheet
    figures), the board examples/naas.yaml declares; the serial's `SWNAA-` prefix tells that
    it is a software NAA."""

    model: str = "alveo-u55c"
    vendor: str = "AMD"
    lut: int = 1_303_680
    ff: int = 2_607_360
    dsp: int = 9_024
    bram: int = 2_016
    uram: int = 960
    memory_bytes: int = 16 * 1024**3


@dataclass(frozen=True)
class NAAConfig:
    name: str
    address: str
    port: int = 4791
    cm_port: int = 12345
    flash_seconds: float = 2.0
    board: BoardIdentity = field(default_factory=BoardIdentity)
    power: PowerModel = field(default_factory=PowerModel)
    sample_hz: float = 100.0
    version: str = "0.0.0"

    @property
    def serial(self) -> str:
        """Stable across restarts: derived from the NAA's name."""
        return "SWNAA-" + hashlib.sha256(self.name.encode()).hexdigest()[:12].upper()


@dataclass(frozen=True)
class LoadedBitstream:
    name: str
    digest: str


@dataclass
class _Stats:
    """Activity the observer saw; the metrics collector reads a copy."""

    bytes_received: int = 0
    bytes_sent: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    kernel_runs: Counter[tuple[int, str]] = field(default_factory=Counter)
    kernel_seconds: dict[int, float] = field(default_factory=dict)
    flashes: Counter[str] = field(default_factory=Counter)
    scrubs: int = 0


@dataclass(frozen=True)
class StatsSnapshot:
    bytes_received: int
    bytes_sent: int
    connections_opened: int
    connections_closed: int
    kernel_runs: dict[tuple[int, str], int]
    kernel_seconds: dict[int, float]
    flashes: dict[str, int]
    scrubs: int


class _Observer:
    """The `ActivityObserver` the data plane reports to: feeds sensors and counters."""

    def __init__(self, *, activity: ActivityAccumulator) -> None:
        self._activity = activity
        self._stats = _Stats()
        self._lock = threading.Lock()

    def on_bytes(self, *, received: int, sent: int) -> None:
        self._activity.add_bytes(received + sent)
        with self._lock:
            self._stats.bytes_received += received
            self._stats.bytes_sent += sent

    def on_connection(self, *, opened: bool) -> None:
        with self._lock:
            if opened:
                self._stats.connections_opened += 1
            else:
                self._stats.connections_closed += 1

    def on_kernel_start(self, *, fn_code: int) -> None:
        self._activity.kernel_started()

    def on_kernel_end(self, *, fn_code: int, seconds: float, return_code: int) -> None:
        self._activity.kernel_ended()
        result = "ok" if return_code == 0 else "error"
        with self._lock:
            self._stats.kernel_runs[(fn_code, result)] += 1
            self._stats.kernel_seconds[fn_code] = (
                self._stats.kernel_seconds.get(fn_code, 0.0) + seconds
            )

    def count_flash(self, result: str) -> None:
        with self._lock:
            self._stats.flashes[result] += 1

    def count_scrub(self) -> None:
        with self._lock:
            self._stats.scrubs += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            s = self._stats
            return StatsSnapshot(
                bytes_received=s.bytes_received,
                bytes_sent=s.bytes_sent,
                connections_opened=s.connections_opened,
                connections_closed=s.connections_closed,
                kernel_runs=dict(s.kernel_runs),
                kernel_seconds=dict(s.kernel_seconds),
                flashes=dict(s.flashes),
                scrubs=s.scrubs,
            )


class SoftwareNAA:
    """The composition of one software NAA. Methods other than `lookup` and the observer run
    on the management plane's event loop."""

    def __init__(
        self,
        *,
        config: NAAConfig,
        registry: KernelRegistry,
        data_plane: DataPlaneFactory | None = None,
    ) -> None:
        self.config = config
        self._registry = registry
        self._state = NAAState.IDLE
        self._reason = ""
        self._loaded: LoadedBitstream | None = None
        self._target: LoadedBitstream | None = None
        self._binding = registry.bind(TEST_FUNCTIONS)
        self._retired_work: dict[str, float] = {}
        self._activity = ActivityAccumulator()
        self._observer = _Observer(activity=self._activity)
        self.observer: ActivityObserver = self._observer
        self.sensors = SensorSampler(
            model=config.power, activity=self._activity, sample_hz=config.sample_hz
        )
        self.data_plane = data_plane(self.lookup, self.observer) if data_plane else None
        self._flash_task: asyncio.Task[None] | None = None

    # -- data plane side (any thread) ------------------------------------------------------

    def lookup(self, fn_code: int) -> Kernel | None:
        """The `KernelLookup` the RPC server calls; nothing is bound while flashing or in
        Error."""
        return self._binding.lookup(fn_code)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.sensors.start()
        if self.data_plane is not None:
            await self.data_plane.start()

    async def stop(self) -> None:
        if self._flash_task is not None:
            self._flash_task.cancel()
        if self.data_plane is not None:
            await self.data_plane.stop()
        self.sensors.stop()

    # -- management side ---------------------------------------------------------------------

    @property
    def state(self) -> NAAState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def loaded(self) -> LoadedBitstream | None:
        return self._loaded

    @property
    def functions(self) -> list[int]:
        return self._binding.fn_codes

    @property
    def active_connections(self) -> int:
        return self.data_plane.active_connections if self.data_plane is not None else 0

    def sensor_sample(self) -> Sample:
        return self.sensors.latest()

    def stats(self) -> StatsSnapshot:
        return self._observer.snapshot()

    def work(self) -> dict[str, float]:
        """Work the kernels reported (`KernelContext.count_work`), summed over every binding
        this NAA had, so the totals survive flashes and scrubs."""
        totals = dict(self._retired_work)
        for unit, amount in self._binding.context.work().items():
            totals[unit] = totals.get(unit, 0.0) + amount
        return totals

    def _swap_binding(self, binding: KernelBinding) -> None:
        old = self._binding
        if old is binding:
            return
        self._binding = binding
        if old is not EMPTY_BINDING:
            for unit, amount in old.context.work().items():
                self._retired_work[unit] = self._retired_work.get(unit, 0.0) + amount

    async def flash(self, *, name: str, digest: str, artifact: str, force: bool) -> NAAState:
        """Start flashing; returns the state to report (Flashing, or Ready if already loaded).
        Fetching, digest verification and kernel binding happen before this returns, so their
        failures are answered directly (and leave the NAA in Error); the emulated
        configuration time then runs in the background."""
        try:
            check_digest(digest)
        except BitstreamError as exc:
            raise FlashFailedError(exc.code, str(exc)) from exc
        decision = decide_flash(
            state=self._state,
            loaded_digest=self._loaded.digest if self._loaded else None,
            target_digest=self._target.digest if self._target else None,
            requested_digest=digest,
            active_connections=self.active_connections,
            force=force,
        )
        if decision is FlashDecision.ALREADY_LOADED:
            return NAAState.READY
        if decision is FlashDecision.ALREADY_FLASHING:
            return NAAState.FLASHING
        if decision is FlashDecision.REFUSE_FLASHING_OTHER:
            target = self._target.digest if self._target else "?"
            raise ConflictError(
                "flash-in-progress",
                f"the NAA is being flashed with {target}; wait until /v1/health reports Ready "
                "or Error, then flash again",
            )
        if decision is FlashDecision.REFUSE_CONNECTIONS:
            raise ConflictError(
                "connections-active",
                f"{self.active_connections} RPC connection(s) are active; flashing would change "
                "the functions under a running job — wait until they close, or pass "
                '"force": true',
            )
        if force and self.active_connections:
            log.warning(
                "flashing %s with %d active connection(s) (forced)", digest, self.active_connections
            )
        self._enter_flashing(LoadedBitstream(name=name, digest=digest))
        try:
            data = await fetch_artifact(artifact)
            verify_digest(data=data, expected=digest)
            bitstream = parse_bitstream(data)
            binding = self._registry.bind(bitstream.kernels_by_fn)
        except BitstreamError as exc:
            self._fail(exc.code, str(exc))
            remote = artifact.startswith(("http://", "https://"))
            status = 502 if exc.code == "artifact-unavailable" and remote else 400
            raise FlashFailedError(exc.code, str(exc), status=status) from exc
        except RegistryError as exc:
            message = f"bitstream {name!r} cannot be loaded: {exc}"
            self._fail("unknown-kernel", message)
            raise FlashFailedError("unknown-kernel", message) from exc
        self._flash_task = asyncio.create_task(self._finish_flash(binding))
        return NAAState.FLASHING

    def _enter_flashing(self, target: LoadedBitstream) -> None:
        log.info("flashing %s (%s)", target.name, target.digest)
        self._state = NAAState.FLASHING
        self._reason = f"flashing {target.name}"
        self._target = target
        self._loaded = None
        self._swap_binding(EMPTY_BINDING)
        self._activity.set_flashing(True)

    def _fail(self, code: str, message: str) -> None:
        log.error("flash failed: %s", message)
        self._state = NAAState.ERROR
        self._reason = message
        self._target = None
        self._loaded = None
        self._swap_binding(EMPTY_BINDING)
        self._activity.set_flashing(False)
        self._observer.count_flash(code)

    async def _finish_flash(self, binding: KernelBinding) -> None:
        await asyncio.sleep(self.config.flash_seconds)
        target = self._target
        if self._state is not NAAState.FLASHING or target is None:
            return
        self._swap_binding(binding)
        self._loaded = target
        self._target = None
        self._state = NAAState.READY
        self._reason = ""
        self._activity.set_flashing(False)
        self._observer.count_flash("ok")
        log.info("flashed %s (%s): fn codes %s", target.name, target.digest, binding.fn_codes)

    async def scrub(self) -> NAAState:
        """Clear memory regions and kernel state (docs/reference/management-api.md: what that
        means for a software NAA)."""
        decision = decide_scrub(state=self._state)
        if decision is ScrubDecision.REFUSE_FLASHING:
            raise ConflictError(
                "flash-in-progress",
                "the NAA is being flashed; scrub after /v1/health reports Ready or Error",
            )
        if self.data_plane is not None and self.active_connections:
            log.warning("scrub drops %d open connection(s)", self.active_connections)
            await self.data_plane.disconnect_all()
        if decision is ScrubDecision.RESET_TO_IDLE:
            self._swap_binding(self._registry.bind(TEST_FUNCTIONS))
            self._state = NAAState.IDLE
            self._reason = ""
        else:
            # Fresh kernel instances: whatever state the old ones held (weights, optimiser
            # moments, counters) is gone.
            self._swap_binding(self._registry.bind(dict(self._binding.names)))
        self._observer.count_scrub()
        return self._state
