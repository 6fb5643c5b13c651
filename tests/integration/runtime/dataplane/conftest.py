"""Fixtures for the data-plane tests: RPC servers on fresh loopback addresses with the test
kernels of `tests.support.roce`, and a fresh host address per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from naa_runtime.rpc import RpcServer
from tests.support.roce import ServerFactory, kernel_lookup, next_loopback


@pytest.fixture
def naa_server() -> Iterator[ServerFactory]:
    """Factory: `naa_server(**RpcServer kwargs)` → a started server on a fresh address."""
    servers: list[RpcServer] = []

    def make(**kwargs: object) -> RpcServer:
        kwargs.setdefault("kernels", kernel_lookup())
        kwargs.setdefault("kernel_timeout", 5.0)
        srv = RpcServer(address=next_loopback(), **kwargs)  # type: ignore[arg-type]
        srv.open()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def host_address() -> str:
    return next_loopback()
