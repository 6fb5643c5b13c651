"""Registered memory regions with remote keys and strict bounds (one table per protection
domain, i.e. per connection).

The responder side of a queue pair asks `MemoryTable.resolve` before every RDMA WRITE lands:
a wrong rkey, a range outside the region or a region without remote-write access raises
`RemoteAccessError` (answered as a remote-access-error NAK) and no byte is touched.
Called by `naa_runtime.roce.qp`, the RPC server and the host connection.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from enum import IntFlag


class Access(IntFlag):
    LOCAL_WRITE = 1
    REMOTE_WRITE = 2
    REMOTE_READ = 4


class RemoteAccessError(Exception):
    """An RDMA access that names an unknown rkey, leaves its region or lacks the access right."""


@dataclass(frozen=True, slots=True)
class MemoryRegion:
    """A registered buffer. `va` is the address peers use (the published virtual address)."""

    view: memoryview
    va: int
    rkey: int
    access: Access

    @property
    def length(self) -> int:
        return self.view.nbytes


def as_byte_view(buffer: object) -> memoryview:
    """A flat, writable unsigned-byte view of any C-contiguous writable buffer."""
    mv = memoryview(buffer)  # type: ignore[arg-type]
    if mv.readonly:
        raise ValueError("memory regions must be writable buffers (got a read-only buffer)")
    if not mv.c_contiguous:
        raise ValueError("memory regions must be C-contiguous buffers")
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv


class MemoryTable:
    """The regions of one protection domain, keyed by rkey."""

    def __init__(self) -> None:
        self._by_rkey: dict[int, MemoryRegion] = {}
        self._lock = threading.Lock()

    def register(
        self, buffer: object, *, va: int, access: Access = Access.LOCAL_WRITE | Access.REMOTE_WRITE
    ) -> MemoryRegion:
        view = as_byte_view(buffer)
        with self._lock:
            while True:
                rkey = secrets.randbits(32)
                if rkey and rkey not in self._by_rkey:
                    break
            mr = MemoryRegion(view=view, va=va, rkey=rkey, access=access)
            self._by_rkey[rkey] = mr
        return mr

    def deregister(self, mr: MemoryRegion) -> None:
        with self._lock:
            self._by_rkey.pop(mr.rkey, None)

    def clear(self) -> None:
        with self._lock:
            self._by_rkey.clear()

    def resolve(self, *, rkey: int, va: int, length: int) -> memoryview:
        """The writable slice [va, va+length) of the region `rkey`, or RemoteAccessError."""
        mr = self._by_rkey.get(rkey)
        if mr is None:
            raise RemoteAccessError(f"no memory region with rkey {rkey:#010x}")
        if not int(mr.access) & _REMOTE_WRITE:  # int &: IntFlag's own & runs Python code
            raise RemoteAccessError(f"region {rkey:#010x} is not remotely writable")
        start = va - mr.va
        if start < 0 or length < 0 or start + length > mr.view.nbytes:
            raise RemoteAccessError(
                f"range {va:#x}+{length} is outside region {rkey:#010x} ({mr.va:#x}+{mr.length})"
            )
        return mr.view[start : start + length]

    def writable(self, rkey: int, va: int, length: int) -> bool:
        """True if `resolve` would give [va, va+length) of region `rkey` (without building
        the slice or an error: the compiled round trip's check of its reply target)."""
        mr = self._by_rkey.get(rkey)
        if mr is None or not int(mr.access) & _REMOTE_WRITE:
            return False
        start = va - mr.va
        return start >= 0 and length >= 0 and start + length <= mr.view.nbytes

    def __len__(self) -> int:
        return len(self._by_rkey)


_REMOTE_WRITE = int(Access.REMOTE_WRITE)
