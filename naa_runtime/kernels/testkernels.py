"""The test kernels of the NAAICE software NAA, and a deadline-aware busy kernel for tests.

Registered by `naa_runtime.kernels.registry.default_registry`; the RPC server runs them through
the `Kernel` protocol. Like the NAAICE software NAA (PROTOCOL.md §4), fn 1 and fn 2 add 1 or 2
(mod 256) to every byte of every non-internal memory region *in place*: an in+out region is
therefore returned incremented, an output-only region returns its previous content incremented.
fn 3 does nothing (latency measurements).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from naa_runtime.kernels.base import KernelTimeout

# Large regions are processed in chunks so that a kernel notices its deadline within one chunk.
_CHUNK_BYTES = 8 * 1024 * 1024


def distinct_regions(
    *, inputs: Sequence[memoryview], outputs: Sequence[memoryview]
) -> list[np.ndarray]:
    """Byte arrays over every region once, in MRSP order: an in+out region is in both lists
    (possibly as two memoryview objects over the same memory) and must be touched only once."""
    seen: set[tuple[int, int]] = set()
    arrays: list[np.ndarray] = []
    for view in (*inputs, *outputs):
        array = np.frombuffer(view, dtype=np.uint8)
        key = (array.ctypes.data, array.nbytes)
        if key in seen:
            continue
        seen.add(key)
        arrays.append(array)
    return arrays


class AddConstant:
    """Adds `amount` (mod 256) to every byte of every region, in place (NAAICE fn 1 and 2)."""

    def __init__(self, amount: int) -> None:
        if not 0 <= amount <= 255:
            raise ValueError(f"amount must be a byte value 0..255, got {amount}")
        self._amount = np.uint8(amount)

    def __call__(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        for array in distinct_regions(inputs=inputs, outputs=outputs):
            if not array.flags.writeable:
                raise ValueError(
                    "the RPC server passed a read-only region; regions must be writable"
                )
            for start in range(0, array.nbytes, _CHUNK_BYTES):
                if time.monotonic() > deadline:
                    raise KernelTimeout(f"add-{int(self._amount)} kernel passed its deadline")
                chunk = array[start : start + _CHUNK_BYTES]
                np.add(chunk, self._amount, out=chunk)
        return 0


class NoOp:
    """Does nothing and returns 0 (NAAICE fn 3, used for latency measurements)."""

    inline = True
    """Returns at once whatever the regions: the RPC server runs it on its receive thread."""

    def __call__(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        return 0


class Busy:
    """Keeps the NAA busy for `user` milliseconds (the 24 user bits of the immediate), checking
    its deadline every millisecond; for load and deadline tests, bound by a bitstream only."""

    def __call__(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        end = time.monotonic() + user / 1000.0
        while (now := time.monotonic()) < end:
            if now > deadline:
                raise KernelTimeout(f"busy kernel asked for {user} ms passed its deadline")
            time.sleep(min(0.001, end - now))
        return 0
