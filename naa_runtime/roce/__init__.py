"""A software RoCEv2 transport over UDP: packet codec and ICRC (`packets`), CM MADs (`cm`),
memory regions (`memory`), RC queue pairs (`qp`) and the socket endpoint (`endpoint`).
Used by `naa_runtime.rpc`."""

try:  # first, so that importing any submodule says what to do when the C module is missing
    import naa_runtime.roce._fastpath  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"the compiled RoCE fast path naa_runtime.roce._fastpath cannot be loaded ({exc}): "
        "build it with `make` (installs gcc and libisal-dev, then the package), or install "
        "libisal-dev and run `.venv/bin/uv pip install --python .venv/bin/python --no-deps -e .`"
    ) from exc

from naa_runtime.roce.endpoint import Endpoint, Impairment, TransportStats
from naa_runtime.roce.memory import Access, MemoryRegion, MemoryTable, RemoteAccessError
from naa_runtime.roce.qp import (
    Completion,
    QueuePair,
    TransportConfig,
    WcOpcode,
    WcStatus,
)

__all__ = [
    "Access",
    "Completion",
    "Endpoint",
    "Impairment",
    "MemoryRegion",
    "MemoryTable",
    "QueuePair",
    "RemoteAccessError",
    "TransportConfig",
    "TransportStats",
    "WcOpcode",
    "WcStatus",
]
