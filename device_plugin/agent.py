"""The node agent process: wires the device plugin, the Lease watcher, the inventory/health and
sampling loops and the Prometheus exporter together, and runs them until stopped.

Called by `device_plugin.cli` (`naaice agent run`) and by integration tests that run the
agent in-process. Owns the one versioned configuration record shared by flags and env.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_plugin.book import EnergyBook
from device_plugin.cards import EmulatedProfile, NAABacking, make_profile
from device_plugin.errors import AgentConfigError
from device_plugin.inventory import Inventory, InventoryConfig
from device_plugin.plugin import DEFAULT_KUBELET_DIR, DevicePlugin
from naaice.api import is_dns_subdomain
from naaice.energy import IntegratorConfig

__all__ = ["Agent", "AgentConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Configuration of `naaice agent run` (flags > env; each flag has an env twin)."""

    node_name: str
    kubelet_dir: Path = DEFAULT_KUBELET_DIR
    metrics_port: int = 9400
    metrics_address: str = "0.0.0.0"
    sample_hz: float = 10.0
    card_profile: str = "emulated"
    lease_namespace: str = "naaice-system"
    probe_interval_s: float = 1.0
    heartbeat_s: float = 10.0
    settle_s: float = 1.0
    kubeconfig: Path | None = None
    sysfs_root: Path = Path("/sys")
    cdi_dir: Path | None = None
    device_plugin: bool = True
    max_finished_jobs: int = 100
    claim_unassigned: bool = False
    mqtt_broker: str | None = None
    mqtt_topic_prefix: str = "naaice"

    def __post_init__(self) -> None:
        if not is_dns_subdomain(self.node_name):
            raise AgentConfigError(
                f"--node-name {self.node_name!r} is not a Kubernetes node name; pass the node "
                f"this agent runs on (the DaemonSet sets NAAICE_NODE_NAME from spec.nodeName)"
            )
        if not (math.isfinite(self.sample_hz) and 1.0 <= self.sample_hz <= 1000.0):
            raise AgentConfigError(
                f"--sample-hz {self.sample_hz} is outside 1..1000; ENERGY.md asks for ≥ 10 Hz"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise AgentConfigError(f"--metrics-port {self.metrics_port} is not a TCP port")
        if self.probe_interval_s <= 0 or self.heartbeat_s <= 0 or self.settle_s < 0:
            raise AgentConfigError(
                "--probe-interval and --heartbeat must be > 0 seconds and --settle ≥ 0"
            )
        if self.mqtt_broker:
            from device_plugin.mqtt import parse_broker

            parse_broker(self.mqtt_broker)
        if self.card_profile not in ("emulated", "real"):
            raise AgentConfigError(
                f"--card-profile {self.card_profile!r} is unknown; use emulated or real"
            )


def _api_client(kubeconfig: Path | None) -> Any:
    from kubernetes import client, config

    cfg: Any = config
    if kubeconfig is not None:
        return cfg.new_client_from_config(config_file=str(kubeconfig))
    cfg.load_incluster_config()
    return client.ApiClient()


class Agent:
    """Start with `run()` (blocks) or `start()`/`stop()` (background thread)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        period = 1.0 / config.sample_hz
        self.book = EnergyBook(
            config=IntegratorConfig(nominal_period_s=period),
            sbc=config.node_name,
            max_finished_jobs=config.max_finished_jobs,
        )
        self.profile = make_profile(
            name=config.card_profile, node_name=config.node_name, sysfs_root=config.sysfs_root
        )
        self.plugin: DevicePlugin | None = None
        self.metrics_port: int | None = None
        self._stop_async: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop_requested = threading.Event()
        self._http: Any = None

    def _on_cards(self, backing: list[NAABacking]) -> None:
        if isinstance(self.profile, EmulatedProfile):
            self.profile.set_backing(backing)
        if self.plugin is not None:
            self.plugin.refresh()

    def run(self) -> None:
        from kubernetes import client
        from prometheus_client import CollectorRegistry, start_http_server

        from device_plugin.exporter import EnergyCollector
        from device_plugin.leases import LeaseWatcher

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda _sig, _frame: self._request_stop())
        api = _api_client(self.config.kubeconfig)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EnergyCollector(self.book))
        server, _thread = start_http_server(
            self.config.metrics_port, addr=self.config.metrics_address, registry=registry
        )
        self._http = server
        self.metrics_port = int(server.server_port)
        log.info("metrics on %s:%d", self.config.metrics_address, self.metrics_port)
        leases = LeaseWatcher(
            coordination_api=client.CoordinationV1Api(api),
            namespace=self.config.lease_namespace,
            book=self.book,
            custom_api=client.CustomObjectsApi(api),
        )
        leases.start()
        if self.config.device_plugin:
            self.plugin = DevicePlugin(
                profile=self.profile,
                kubelet_dir=self.config.kubelet_dir,
                cdi_dir=self.config.cdi_dir,
            )
            self.plugin.start()
        inventory = Inventory(
            config=InventoryConfig(
                node_name=self.config.node_name,
                sample_hz=self.config.sample_hz,
                probe_interval_s=self.config.probe_interval_s,
                heartbeat_s=self.config.heartbeat_s,
                settle_s=self.config.settle_s,
                claim_unassigned=self.config.claim_unassigned,
                poll_sensors=not self.config.mqtt_broker,
            ),
            book=self.book,
            custom_api=client.CustomObjectsApi(api),
            core_api=client.CoreV1Api(api),
            known_until_ns=leases.known_until_ns,
            on_cards=self._on_cards,
        )

        ingest = None
        if self.config.mqtt_broker:
            from device_plugin.mqtt import MqttIngest, parse_broker

            host, port = parse_broker(self.config.mqtt_broker)
            ingest = MqttIngest(
                book=self.book,
                host=host,
                port=port,
                topic_prefix=self.config.mqtt_topic_prefix,
                accept=self.book.has_device,
            )
            ingest.start()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_async = asyncio.Event()
            if self._stop_requested.is_set():
                self._stop_async.set()
            self._ready.set()
            await inventory.run(self._stop_async)

        try:
            asyncio.run(main())
        finally:
            if ingest is not None:
                ingest.stop()
            if self.plugin is not None:
                self.plugin.stop()
            leases.stop()
            server.shutdown()
            server.server_close()
            api.close()

    def start(self) -> None:
        """Run in a background thread; returns once the loops are up."""
        self._thread = threading.Thread(target=self.run, name="naaice-agent", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise AgentConfigError("the agent did not start within 30 s; see its log")

    def _request_stop(self) -> None:
        self._stop_requested.set()
        if self._loop is not None and self._stop_async is not None:
            self._loop.call_soon_threadsafe(self._stop_async.set)

    def stop(self) -> None:
        self._request_stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
