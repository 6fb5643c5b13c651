"""Runs one software NAA in a process: data plane, sensors and the management HTTP server,
until SIGTERM/SIGINT. Called by `naaice runtime serve` (`naa_runtime.cli`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from naa_runtime.kernels.registry import KernelRegistry, process_registry
from naa_runtime.management import create_app, naa_registry
from naa_runtime.naa import NAAConfig, SoftwareNAA

log = logging.getLogger(__name__)


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
    naa = SoftwareNAA(config=config, registry=registry or process_registry())
    metrics = naa_registry(naa)
    app = create_app(naa=naa, token=options.token, metrics=metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await naa.start()
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
