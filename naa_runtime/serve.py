"""Runs one software NAA in a process: data plane, sensors and the management HTTP server,
until SIGTERM/SIGINT. Called by `naaice runtime serve` (`naa_runtime.cli`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from naa_runtime.kernels.base import ActivityObserver, KernelLookup
from naa_runtime.kernels.registry import KernelRegistry, process_registry
from naa_runtime.management import DataPlaneCounters, create_app, naa_registry
from naa_runtime.naa import DataPlaneFactory, NAAConfig, SoftwareNAA
from naa_runtime.rpc.server import RpcServer, RpcStats

log = logging.getLogger(__name__)

_K = TypeVar("_K")


@dataclass(frozen=True)
class ServeOptions:
    mgmt_address: str
    mgmt_port: int
    token: str | None
    kernel_timeout: float = 60.0
    slots: int = 4


class ServeError(Exception):
    """The NAA could not start (e.g. its address or port is taken)."""


async def run(
    *,
    config: NAAConfig,
    options: ServeOptions,
    registry: KernelRegistry | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    naa = SoftwareNAA(
        config=config,
        registry=registry or process_registry(),
        data_plane=rpc_data_plane(config=config, options=options),
    )
    server = naa.data_plane
    assert isinstance(server, RpcServer)
    metrics = naa_registry(naa, data_plane_counters=lambda: counters_of(server.stats))
    app = create_app(naa=naa, token=options.token, metrics=metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await naa.start()
    except OSError as exc:
        naa.sensors.stop()
        raise ServeError(str(exc)) from exc
    try:
        await runner.setup()
        site = web.TCPSite(runner, options.mgmt_address, options.mgmt_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {options.mgmt_address}:{options.mgmt_port} for the "
                f"management API: {exc.strerror}; pick another --mgmt-port or --mgmt-address"
            ) from exc
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        log.info(
            "NAA %s ready: data plane %s:%d (UDP), management http://%s:%d",
            config.name,
            config.address,
            config.port,
            options.mgmt_address,
            options.mgmt_port,
        )
        await stop.wait()
        log.info("NAA %s stopping", config.name)
    finally:
        await runner.cleanup()
        await naa.stop()


def rpc_data_plane(*, config: NAAConfig, options: ServeOptions) -> DataPlaneFactory:
    """The RoCEv2 RPC server as the NAA's data plane."""

    def make(lookup: KernelLookup, observer: ActivityObserver) -> RpcServer:
        return RpcServer(
            address=config.address,
            port=config.port,
            cm_port=config.cm_port,
            kernels=lookup,
            slots=options.slots,
            kernel_timeout=options.kernel_timeout,
            observer=observer,
            memory_bytes=config.board.memory_bytes,
        )

    return make


def _copy(counter: Mapping[_K, int]) -> dict[_K, int]:
    # The data plane's threads may add a key while we copy; retry (a copy takes microseconds).
    for _ in range(100):
        try:
            return dict(counter)
        except RuntimeError:
            continue
    return {}


def counters_of(stats: RpcStats) -> DataPlaneCounters:
    transport = stats.transport
    return DataPlaneCounters(
        packets_received=transport.packets_rx,
        packets_sent=transport.packets_tx,
        dropped=_copy(transport.dropped),
        retransmits=transport.retransmits,
        naks_sent=_copy(transport.naks_sent),
        naks_received=_copy(transport.naks_received),
        rpcs=_copy(stats.rpcs),
        bytes_received=transport.bytes_rx,
        bytes_sent=transport.bytes_tx,
        connections_rejected=stats.connections_rejected,
        mrsp_errors=_copy(stats.mrsp_errors),
    )
