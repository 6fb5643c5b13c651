"""A kubelet-side harness: the kubelet's Registration service on a unix socket, and a device
manager that drives a registered plugin the way the kubelet's does (dial back on Register, read
GetDevicePluginOptions, keep a ListAndWatch stream, call Allocate / GetPreferredAllocation /
PreStartContainer). `restart()` behaves like a kubelet restart: the server goes away, the
plugin directory is emptied (the kubelet removes every socket on start) and a new kubelet.sock
appears.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from device_plugin.kubelet_api import (
    API_VERSION,
    KUBELET_SOCKET,
    DevicePluginClient,
    DeviceState,
    PluginOptions,
    RegisterRequest,
    add_registration_service,
)


class KubeletHarness:
    def __init__(self, plugin_dir: Path) -> None:
        self.plugin_dir = plugin_dir
        self.registrations: list[RegisterRequest] = []
        self.options: PluginOptions | None = None
        self.client: DevicePluginClient | None = None
        self.updates: queue.Queue[list[DeviceState]] = queue.Queue()
        self.latest: list[DeviceState] = []
        self._server: grpc.Server | None = None
        self._lock = threading.Lock()

    @property
    def socket(self) -> Path:
        return self.plugin_dir / KUBELET_SOCKET

    def start(self) -> None:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_registration_service(server, self._register)
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._server is not None:
            self._server.stop(grace=0).wait()
            self._server = None
        self.socket.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        for entry in self.plugin_dir.iterdir():
            if entry.name != "kubelet_internal_checkpoint" and not entry.is_dir():
                entry.unlink()
        self.start()

    def _register(self, req: RegisterRequest) -> None:
        if req.version != API_VERSION:
            raise ValueError(f"version {req.version} unsupported, want {API_VERSION}")
        domain, _, name = req.resource_name.partition("/")
        if not name or "." not in domain or domain.endswith("kubernetes.io"):
            raise ValueError(f"{req.resource_name} is not an extended resource name")
        client = DevicePluginClient(self.plugin_dir / req.endpoint)
        options = client.options()
        with self._lock:
            if self.client is not None:
                self.client.close()
            self.client = client
            self.options = options
            self.registrations.append(req)
        threading.Thread(target=self._run, args=(client,), daemon=True).start()

    def _run(self, client: DevicePluginClient) -> None:
        try:
            for devices in client.list_and_watch():
                self.latest = devices
                self.updates.put(devices)
        except grpc.RpcError:
            return  # stream ended: plugin gone or we closed it, as in the kubelet

    def next_update(self, timeout: float = 10.0) -> list[DeviceState]:
        return self.updates.get(timeout=timeout)

    def wait_for(
        self, predicate: Callable[[list[DeviceState]], bool], timeout: float = 15.0
    ) -> list[DeviceState]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no ListAndWatch update matched; last: {self.latest}")
            try:
                devices = self.updates.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(devices):
                return devices

    def wait_registrations(self, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.registrations) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.registrations)} registrations, want {n}")
            time.sleep(0.05)
