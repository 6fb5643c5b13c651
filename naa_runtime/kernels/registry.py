"""The kernel registry: kernel names → factories, and the fn-code binding a bitstream loads.

The software NAA (`naa_runtime.naa`) owns one `KernelRegistry`; flashing a software bitstream
turns its `functions: [{fnCode, kernel}]` into a `KernelBinding` that the RPC server consults
through `KernelLookup`. Other parts plug kernels in with `register(name, factory)` (the
training core registers its kernels, bound to fn codes ≥ 16 by its bitstreams).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from naa_runtime.kernels.base import Kernel
from naa_runtime.kernels.testkernels import AddConstant, Busy, NoOp

KernelFactory = Callable[[], Kernel]
"""Makes a fresh kernel instance; called at flash and again at scrub (which drops its state)."""

SharedKernelFactory = Callable[["KernelContext"], Kernel]
"""Like KernelFactory, for kernels that share state with the other kernels of their binding."""


class KernelContext:
    """State shared by the kernels of one binding (one loaded bitstream on one NAA): several fn
    codes of one core, e.g. the training core's configure/load/train/fetch/infer, act on the
    same model. A new context comes with every bind (flash, scrub)."""

    def __init__(self) -> None:
        self.shared: dict[str, object] = {}
        self._work: dict[str, float] = {}
        self._work_lock = threading.Lock()

    def count_work(self, unit: str, amount: float = 1.0) -> None:
        """Report work done (e.g. `count_work("training_epochs", 20)`); the NAA exports the
        running total as the counter `naa_<unit>_total` on /metrics, kept across flashes and
        scrubs. Units are lower-case snake case."""
        if not _UNIT.match(unit):
            raise RegistryError(f"work unit {unit!r} must be lower-case snake case, e.g. 'epochs'")
        if amount < 0:
            raise RegistryError(f"work only accumulates: {unit} amount {amount} is negative")
        with self._work_lock:
            self._work[unit] = self._work.get(unit, 0.0) + amount

    def work(self) -> dict[str, float]:
        with self._work_lock:
            return dict(self._work)


TEST_ADD_ONE = "test.add1"
TEST_ADD_TWO = "test.add2"
TEST_NOOP = "test.noop"
TEST_BUSY = "test.busy"

TEST_FUNCTIONS: Mapping[int, str] = {1: TEST_ADD_ONE, 2: TEST_ADD_TWO, 3: TEST_NOOP}
"""What an unflashed NAA serves, as the NAAICE software NAA does."""

MIN_FN_CODE = 1
MAX_FN_CODE = 127

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,62}$")
_UNIT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class RegistryError(Exception):
    """Base of the registry's errors."""


class DuplicateKernelError(RegistryError):
    """A kernel name was registered twice without `replace=True`."""


class UnknownKernelError(RegistryError):
    """A bitstream names a kernel this runtime does not have."""

    def __init__(self, names: Iterable[str], known: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self.known = sorted(known)
        super().__init__(
            f"unknown kernel(s) {', '.join(self.names)}; this runtime provides "
            f"{', '.join(self.known)} — fix the bitstream's functions[].kernel or run a runtime "
            "that registers these kernels"
        )


class KernelRegistry:
    """Thread-safe map of kernel names to factories."""

    def __init__(self) -> None:
        self._factories: dict[str, KernelFactory] = {}
        self._shared: dict[str, SharedKernelFactory] = {}
        self._lock = threading.Lock()

    def register(self, name: str, factory: KernelFactory, *, replace: bool = False) -> None:
        """Make `factory` available under `name` (lower-case, dots for namespaces, e.g.
        `poet.train`)."""
        if not _NAME.match(name):
            raise RegistryError(
                f"invalid kernel name {name!r}: use 1-63 lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
        with self._lock:
            if name in self._factories and not replace:
                raise DuplicateKernelError(
                    f"kernel {name!r} is already registered; pass replace=True to override it"
                )
            self._factories[name] = factory
            self._shared.pop(name, None)

    def register_shared(
        self, name: str, factory: SharedKernelFactory, *, replace: bool = False
    ) -> None:
        """Like `register`; the factory gets the binding's `KernelContext`."""
        self.register(name, _unbound_shared, replace=replace)
        with self._lock:
            self._shared[name] = factory

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._factories

    def bind(self, functions: Mapping[int, str]) -> KernelBinding:
        """Instantiate one kernel per fn code; every name must be registered."""
        with self._lock:
            unknown = [name for name in functions.values() if name not in self._factories]
            if unknown:
                raise UnknownKernelError(unknown, self._factories)
            factories = {fn: self._factories[name] for fn, name in functions.items()}
            shared = {fn: self._shared.get(name) for fn, name in functions.items()}
        for fn in functions:
            if not MIN_FN_CODE <= fn <= MAX_FN_CODE:
                raise RegistryError(f"fn code {fn} is outside {MIN_FN_CODE}..{MAX_FN_CODE}")
        context = KernelContext()
        kernels: dict[int, Kernel] = {}
        for fn, factory in factories.items():
            make_shared = shared[fn]
            kernels[fn] = factory() if make_shared is None else make_shared(context)
        return KernelBinding(names=dict(functions), kernels=kernels, context=context)


@dataclass(frozen=True)
class KernelBinding:
    """The kernels one loaded bitstream binds to fn codes. Immutable: flashing swaps in a new
    binding, so an RPC in flight keeps the kernel it looked up."""

    names: Mapping[int, str]
    kernels: Mapping[int, Kernel]
    context: KernelContext = field(default_factory=KernelContext)

    def lookup(self, fn_code: int) -> Kernel | None:
        return self.kernels.get(fn_code)

    @property
    def fn_codes(self) -> list[int]:
        return sorted(self.kernels)


EMPTY_BINDING = KernelBinding(names={}, kernels={})


def _unbound_shared() -> Kernel:
    raise RegistryError("a shared kernel factory needs its binding's context; use bind()")


def default_registry() -> KernelRegistry:
    """A registry holding the test kernels (`test.add1`, `test.add2`, `test.noop`,
    `test.busy`)."""
    registry = KernelRegistry()
    registry.register(TEST_ADD_ONE, lambda: AddConstant(1))
    registry.register(TEST_ADD_TWO, lambda: AddConstant(2))
    registry.register(TEST_NOOP, NoOp)
    registry.register(TEST_BUSY, Busy)
    return registry


_PROCESS_REGISTRY = default_registry()


def process_registry() -> KernelRegistry:
    """The registry `naaice runtime serve` uses; plug-in modules add to it at import time."""
    return _PROCESS_REGISTRY


def register_shared(name: str, factory: SharedKernelFactory, *, replace: bool = False) -> None:
    """Register a kernel that shares a `KernelContext` with the other kernels of its binding."""
    _PROCESS_REGISTRY.register_shared(name, factory, replace=replace)


def register(name: str, factory: KernelFactory, *, replace: bool = False) -> None:
    """Register a kernel in the process registry (the plug-in point for e.g. the training
    core: call it at import of the module named by `--kernel-module`)."""
    _PROCESS_REGISTRY.register(name, factory, replace=replace)
