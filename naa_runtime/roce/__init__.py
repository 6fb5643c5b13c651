"""A software RoCEv2 transport over UDP: packet codec and ICRC (`packets`), CM MADs (`cm`),
memory regions (`memory`), RC queue pairs (`qp`) and the socket endpoint (`endpoint`).
Used by `naa_runtime.rpc`."""

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
