"""Helpers for the data-plane tests and benchmarks: unique loopback addresses per process
(Linux routes all of 127/8 to lo) and a kernel lookup with the registry's test kernels 1/2/3
plus kernels the tests need (20 copy, 21 echo the user bits, 22 sleep past the deadline,
23 raise)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from naa_runtime.kernels import TEST_FUNCTIONS, Kernel, default_registry
from naa_runtime.mrsp import MrFlags
from naa_runtime.rpc import HostConnection, Region, RpcServer

_counter = itertools.count()
_SECOND_OCTET = 100 + os.getpid() % 100


def next_loopback() -> str:
    """A loopback address no other test process uses (127.<100+pid%100>.x.y)."""
    n = next(_counter)
    return f"127.{_SECOND_OCTET}.{n // 250}.{n % 250 + 2}"


def _copy_first_input(
    *, inputs: Sequence[memoryview], outputs: Sequence[memoryview], user: int, deadline: float
) -> int:
    src = np.frombuffer(inputs[0], np.uint8)
    for out in outputs:
        dst = np.frombuffer(out, np.uint8)
        n = min(len(src), len(dst))
        dst[:n] = src[:n]
    return 0


def _echo_user(
    *, inputs: Sequence[memoryview], outputs: Sequence[memoryview], user: int, deadline: float
) -> int:
    return user


def _sleep_past_deadline(
    *, inputs: Sequence[memoryview], outputs: Sequence[memoryview], user: int, deadline: float
) -> int:
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.3)
    return 0


def _raise(
    *, inputs: Sequence[memoryview], outputs: Sequence[memoryview], user: int, deadline: float
) -> int:
    raise RuntimeError("kernel bug")


EXTRA_KERNELS: dict[int, Kernel] = {
    20: _copy_first_input,
    21: _echo_user,
    22: _sleep_past_deadline,
    23: _raise,
}


def kernel_lookup() -> Callable[[int], Kernel | None]:
    binding = default_registry().bind(TEST_FUNCTIONS)

    def lookup(fn: int) -> Kernel | None:
        return EXTRA_KERNELS.get(fn) or binding.lookup(fn)

    return lookup


ServerFactory = Callable[..., RpcServer]


def connect_regions(
    naa_address: str, size: int, *, aliased: bool = False, **host: object
) -> tuple[HostConnection, np.ndarray, np.ndarray]:
    """A host connected to the NAA at `naa_address` (from a fresh loopback address; `host`
    goes to HostConnection) with an input region `src` and an output region `dst` of `size`
    bytes (`src` as one INPUT|OUTPUT region if `aliased`), MRSP done."""
    src = np.zeros(size, np.uint8)
    dst = np.zeros(size, np.uint8)
    h = HostConnection(naa_address=naa_address, local_address=next_loopback(), **host)  # type: ignore[arg-type]
    h.connect()
    if aliased:
        h.register([Region(view=memoryview(src), flags=MrFlags.INPUT | MrFlags.OUTPUT)])
    else:
        h.register(
            [
                Region(view=memoryview(src), flags=MrFlags.INPUT),
                Region(view=memoryview(dst), flags=MrFlags.OUTPUT, requested_addr=1 << 20),
            ]
        )
    h.mrsp()
    return h, src, dst


def call_random(
    h: HostConnection,
    src: np.ndarray,
    dst: np.ndarray,
    *,
    fn: int,
    calls: int,
    seed: int,
    aliased: bool = False,
) -> list[tuple[int, bytes]]:
    """`calls` RPCs of kernel `fn` with fresh random input in `src` each time: what each
    returned and the output region after it (kernel 20 checked to have copied the input)."""
    rng = np.random.default_rng(seed)
    results = []
    for i in range(calls):
        data = rng.integers(0, 256, src.size, dtype=np.uint8)
        src[:] = data
        rc = h.call(fn, user=i, timeout=30)
        if fn == 20:
            assert np.array_equal(dst, data), f"call {i}"
        results.append((rc, (src if aliased else dst).tobytes()))
    return results
