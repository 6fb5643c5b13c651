"""The interfaces between the RPC server (data plane), the kernels it dispatches to, and the
observers that watch its activity (sensors, metrics).

The data plane calls `KernelLookup(fn_code)` for every RPC and reports what it does to an
`ActivityObserver`; the kernel registry and the management plane implement these. See
docs/design/contracts.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Kernel(Protocol):
    """A function an NAA runs for one RPC.

    `inputs` and `outputs` are writable views of the registered memory regions in the order
    the host described them in MRSP (an in+out region appears in both). `user` is the 24 user
    bits of the immediate. The return value is the application return code (0 = OK), sent in
    bits 31..8 of the reply immediate. A kernel that cannot finish before `deadline`
    (`time.monotonic()` seconds) raises `KernelTimeout`.

    A kernel may declare a class attribute `inline = True`: it returns within microseconds
    whatever the regions' sizes and never blocks. The RPC server then runs it on its receive
    thread right after acknowledging the request (the lowest latency: no thread hand-off, no
    watchdog). Without it (the default, e.g. training kernels), the server runs the kernel on
    the connection's worker thread under the KERNEL_TIMEOUT watchdog, unless its previous run
    took less than 200 µs.
    """

    def __call__(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int: ...


KernelLookup = Callable[[int], Kernel | None]
"""Maps an fn code (1..127) to the kernel the loaded bitstream binds to it, or None."""


class KernelTimeout(Exception):
    """Raised by a kernel that passed its deadline; answered as KERNEL_TIMEOUT."""


class ActivityObserver(Protocol):
    """Receives the data plane's activity; drives the power model and the metrics."""

    def on_bytes(self, *, received: int, sent: int) -> None: ...

    def on_connection(self, *, opened: bool) -> None: ...

    def on_kernel_start(self, *, fn_code: int) -> None: ...

    def on_kernel_end(self, *, fn_code: int, seconds: float, return_code: int) -> None: ...
