"""The NAAICE RPC over RoCEv2: the software NAA's server (`RpcServer`) and the host side
(`HostConnection`). `naa_runtime.client` wraps the host side in the five-call API."""

from naa_runtime.rpc.host import (
    ConnectError,
    HostConnection,
    HostError,
    Region,
    State,
    TransferError,
)
from naa_runtime.rpc.server import (
    KERNEL_FAILED,
    KERNEL_TIMEOUT,
    NAA_SUCCESS,
    UNKNOWN_FUNCTION,
    RpcServer,
    RpcStats,
)

__all__ = [
    "KERNEL_FAILED",
    "KERNEL_TIMEOUT",
    "NAA_SUCCESS",
    "UNKNOWN_FUNCTION",
    "ConnectError",
    "HostConnection",
    "HostError",
    "Region",
    "RpcServer",
    "RpcStats",
    "State",
    "TransferError",
]
