"""The NAAICE host API in Python: `naa_create`, `naa_invoke`, `naa_test`, `naa_wait`,
`naa_finalize` with the semantics of the NAAICE middleware (PROTOCOL.md §1), plus `Naa`, a
context manager that takes NumPy arrays (or any writable buffer) as memory regions.

Host programs (the POET training app, examples, tests) call this; it speaks RoCEv2 through
`naa_runtime.rpc.host` and finds NAAs in `NAA_SPEC` via `naaice.spec`.

Differences from the C API, all Pythonic rather than semantic: failures raise `NaaError`
(where C returns -1), `naa_test` returns `(flag, status)`, `naa_wait` returns the status.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from naa_runtime.mrsp import MrFlags
from naa_runtime.roce.endpoint import Impairment
from naa_runtime.roce.memory import as_byte_view
from naa_runtime.roce.qp import TransportConfig
from naa_runtime.rpc.host import (
    NAA_PAGE_WIDTH,
    HostConnection,
    HostError,
    Region,
    State,
    buffer_address,
)
from naaice.spec import NAA_SPEC_ENV, NaaSpecBinder, NaaSpecError

NAA_SUCCESS = 0
SOCKET_UNAVAIL = 1
KERNEL_TIMEOUT = 2
MAX_MRS = 32
DEFAULT_TIMEOUT = 3600.0
POLLING_TIMEOUT = 0.5


class NaaError(Exception):
    """A host API call failed; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class NaaParam:
    """One parameter: a writable buffer (NumPy array, bytearray, …), optionally only its first
    `size` bytes, optionally sent only with the first RPC (`single_send`)."""

    addr: object
    size: int | None = None
    single_send: bool = False

    def view(self) -> memoryview:
        v = as_byte_view(self.addr)
        if self.size is not None:
            if not 0 <= self.size <= v.nbytes:
                raise NaaError(f"param size {self.size} exceeds its buffer ({v.nbytes} bytes)")
            v = v[: self.size]
        return v


@dataclass(frozen=True)
class NaaStatus:
    """`state` as the library's enum; `naa_error` is the NAA's return code (bits 31..8 of the
    reply immediate: 0 success, 2 KERNEL_TIMEOUT, ≥0x10 application errors); `bytes_received`
    is the length of the last reply write only, as in the library."""

    state: State
    naa_error: int
    bytes_received: int


@dataclass
class NaaHandle:
    function_code: int
    connection: HostConnection
    spec_index: int


_binder: list[NaaSpecBinder] = []
_binder_lock = threading.Lock()


def _spec_binder() -> NaaSpecBinder:
    """NAA_SPEC is parsed once per process, as in the library."""
    with _binder_lock:
        if not _binder:
            _binder.append(NaaSpecBinder.from_env_value(os.environ.get(NAA_SPEC_ENV)))
        return _binder[0]


def reset_naa_spec() -> None:
    """Forget the parsed NAA_SPEC and its bindings (for programs that change the env var)."""
    with _binder_lock:
        _binder.clear()


def build_regions(inputs: Sequence[NaaParam], outputs: Sequence[NaaParam]) -> list[Region]:
    """MR order as the library: inputs in order, then outputs that do not alias an input (an
    output with the same address as an input turns that input into an in+out region);
    requested NAA addresses sequential from 0, each region rounded up to 4 KiB."""
    views = [p.view() for p in inputs]
    flags = [MrFlags.INPUT | (MrFlags.SINGLESEND if p.single_send else MrFlags(0)) for p in inputs]
    addrs = [buffer_address(v) for v in views]
    for p in outputs:
        v = p.view()
        a = buffer_address(v)
        if a and a in addrs:
            flags[addrs.index(a)] |= MrFlags.OUTPUT
            continue
        views.append(v)
        flags.append(MrFlags.OUTPUT)
        addrs.append(a)
    if len(views) > MAX_MRS:
        raise NaaError(f"{len(views)} memory regions requested; at most {MAX_MRS} are allowed")
    regions = []
    next_addr = 0
    for v, f in zip(views, flags, strict=True):
        regions.append(Region(view=v, flags=f, requested_addr=next_addr))
        next_addr += -(-max(v.nbytes, 1) // NAA_PAGE_WIDTH) * NAA_PAGE_WIDTH
    return regions


def _resolve(address: str) -> str:
    try:
        return str(socket.getaddrinfo(address, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0])
    except socket.gaierror as e:
        raise NaaError(f"cannot resolve NAA address {address!r} from NAA_SPEC: {e}") from e


def naa_create(
    fn_code: int,
    inputs: Sequence[NaaParam],
    outputs: Sequence[NaaParam],
    *,
    local_address: str | None = None,
    config: TransportConfig | None = None,
    impairment: Impairment | None = None,
) -> NaaHandle:
    """Bind the first unbound NAA_SPEC entry with `fn_code` (its param_count must equal
    len(inputs)), connect, register the regions and run MRSP. Blocking."""
    if not 1 <= fn_code <= 127:
        raise NaaError(f"fn code {fn_code} is outside 1..127")
    try:
        index, entry = _spec_binder().bind(fn_code=fn_code, param_count=len(inputs))
    except NaaSpecError as e:
        raise NaaError(str(e)) from e
    conn: HostConnection | None = None
    try:
        # 32 regions do not fit real NAAs' 768-B MRSP buffer (PROTOCOL.md §7.4); they are
        # still sent, and the NAA answers MRSP error 0x03.
        regions = build_regions(inputs, outputs)
        conn = HostConnection(
            naa_address=_resolve(entry.address),
            cm_port=entry.port,
            local_address=local_address,
            config=config,
            impairment=impairment,
        )
        conn.connect()
        conn.register(regions)
        conn.mrsp()
    except Exception as e:
        if conn is not None:
            conn.disconnect()
        _spec_binder().release(index)
        if isinstance(e, NaaError):
            raise
        raise NaaError(f"naa_create(fn {fn_code}) via {entry.address}:{entry.port}: {e}") from e
    return NaaHandle(function_code=fn_code, connection=conn, spec_index=index)


def naa_invoke(handle: NaaHandle, *, user: int = 0) -> int:
    """Start one RPC (non-blocking). `user` fills the 24 user bits of the immediate
    (the middleware sends 0). Returns 0."""
    try:
        handle.connection.invoke(handle.function_code, user=user)
    except HostError as e:
        raise NaaError(str(e)) from e
    return 0


def _status(handle: NaaHandle) -> NaaStatus:
    c = handle.connection
    return NaaStatus(state=c.state, naa_error=c.return_code, bytes_received=c.bytes_received)


def naa_test(handle: NaaHandle, *, timeout: float = POLLING_TIMEOUT) -> tuple[bool, NaaStatus]:
    """Wait up to `timeout` (the library's 500 ms) for the RPC; `(finished, status)`."""
    st = handle.connection.wait(timeout)
    if st == State.ERROR:
        raise NaaError(f"RPC failed: {handle.connection.error}")
    return st >= State.FINISHED, _status(handle)


def naa_wait(handle: NaaHandle, *, timeout: float = DEFAULT_TIMEOUT) -> NaaStatus:
    """Block until the RPC finished (the library's 3600 s alarm is `timeout`)."""
    st = handle.connection.wait(timeout)
    if st == State.ERROR:
        raise NaaError(f"RPC failed: {handle.connection.error}")
    if st != State.FINISHED:
        raise NaaError(f"RPC did not finish within {timeout} s")
    return _status(handle)


def naa_finalize(handle: NaaHandle) -> int:
    """Disconnect (DREQ/DREP), deregister, and unbind the NAA_SPEC entry. Returns 0."""
    handle.connection.disconnect()
    _spec_binder().release(handle.spec_index)
    return 0


class Naa:
    """`with Naa(1, inputs=[a], outputs=[a]) as naa: rc = naa()` — a handle as a context
    manager; arrays may be passed directly (wrapped as `NaaParam`)."""

    def __init__(
        self,
        fn_code: int,
        *,
        inputs: Sequence[object],
        outputs: Sequence[object] = (),
        local_address: str | None = None,
        config: TransportConfig | None = None,
    ) -> None:
        self.fn_code = fn_code
        self._inputs = [p if isinstance(p, NaaParam) else NaaParam(p) for p in inputs]
        self._outputs = [p if isinstance(p, NaaParam) else NaaParam(p) for p in outputs]
        self._local = local_address
        self._config = config
        self.handle: NaaHandle | None = None

    def __enter__(self) -> Naa:
        self.handle = naa_create(
            self.fn_code,
            self._inputs,
            self._outputs,
            local_address=self._local,
            config=self._config,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.handle is not None:
            naa_finalize(self.handle)
            self.handle = None

    def _need(self) -> NaaHandle:
        if self.handle is None:
            raise NaaError("use Naa(...) in a with-statement (not connected)")
        return self.handle

    def invoke(self, *, user: int = 0) -> None:
        naa_invoke(self._need(), user=user)

    def wait(self, *, timeout: float = DEFAULT_TIMEOUT) -> NaaStatus:
        return naa_wait(self._need(), timeout=timeout)

    def __call__(self, *, user: int = 0, timeout: float = DEFAULT_TIMEOUT) -> int:
        """One RPC, blocking; the NAA's return code (0 = success)."""
        self.invoke(user=user)
        return self.wait(timeout=timeout).naa_error


__all__ = [
    "KERNEL_TIMEOUT",
    "NAA_SUCCESS",
    "Naa",
    "NaaError",
    "NaaHandle",
    "NaaParam",
    "NaaStatus",
    "State",
    "naa_create",
    "naa_finalize",
    "naa_invoke",
    "naa_test",
    "naa_wait",
    "reset_naa_spec",
]
