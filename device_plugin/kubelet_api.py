"""Typed wrapper over the generated kubelet device plugin API (deviceplugin v1beta1).

The only module that touches `device_plugin._generated`: it converts between the protobuf
messages and plain dataclasses, registers a plugin implementation on a gRPC server, registers
with the kubelet, and offers the kubelet-side client and Registration service used by the tests'
kubelet harness. Called by `device_plugin.plugin` and by tests/integration/device_plugin.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

# The generated modules are untyped; importing them by name keeps mypy out of the quarantine
# and makes everything they hand back `Any` until it is converted below.
api_pb2: Any = importlib.import_module("device_plugin._generated.api_pb2")
api_pb2_grpc: Any = importlib.import_module("device_plugin._generated.api_pb2_grpc")

__all__ = [
    "API_VERSION",
    "HEALTHY",
    "KUBELET_SOCKET",
    "UNHEALTHY",
    "ContainerAllocation",
    "DeviceNode",
    "DevicePluginClient",
    "DevicePluginHandlers",
    "DeviceState",
    "HostMount",
    "PluginOptions",
    "PreferredRequest",
    "RegisterRequest",
    "add_device_plugin",
    "add_registration_service",
    "register_with_kubelet",
    "unix_target",
]

API_VERSION = "v1beta1"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
KUBELET_SOCKET = "kubelet.sock"


def unix_target(path: Path) -> str:
    """gRPC target for a unix socket path."""
    return f"unix://{path.resolve()}"


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One advertised device: ID (≤ 63 chars), health, optional NUMA node."""

    id: str
    healthy: bool
    numa_node: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceNode:
    """A host device node to expose in the container (`DeviceSpec`)."""

    host_path: str
    container_path: str
    permissions: str = "rw"


@dataclass(frozen=True, slots=True)
class HostMount:
    """A host path to mount in the container."""

    host_path: str
    container_path: str
    read_only: bool = True


@dataclass(frozen=True, slots=True)
class ContainerAllocation:
    """What the kubelet must inject into one container for its devices."""

    envs: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[HostMount] = ()
    devices: Sequence[DeviceNode] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    cdi_devices: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class PreferredRequest:
    """One container's GetPreferredAllocation request."""

    available: Sequence[str]
    must_include: Sequence[str]
    size: int


@dataclass(frozen=True, slots=True)
class PluginOptions:
    pre_start_required: bool
    get_preferred_allocation_available: bool


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    version: str
    endpoint: str
    resource_name: str
    options: PluginOptions


class DevicePluginHandlers(Protocol):
    """The plugin side, in plain types. Raise `grpc.RpcError`-free exceptions; the adapter maps
    `LookupError` to NOT_FOUND, `ValueError` to INVALID_ARGUMENT and `RuntimeError` to
    FAILED_PRECONDITION, each with the exception's message."""

    def options(self) -> PluginOptions: ...

    def watch_devices(self, *, is_active: Callable[[], bool]) -> Iterator[Sequence[DeviceState]]:
        """Yield the full device list now and after every change, until `is_active()` is
        False or the plugin stops."""
        ...

    def allocate(self, *, requests: Sequence[Sequence[str]]) -> Sequence[ContainerAllocation]: ...

    def preferred_allocation(
        self, *, requests: Sequence[PreferredRequest]
    ) -> Sequence[Sequence[str]]: ...

    def pre_start_container(self, *, device_ids: Sequence[str]) -> None: ...


# ---- conversions ---------------------------------------------------------------------------


def _device_to_pb(d: DeviceState) -> Any:
    topology = None
    if d.numa_node is not None:
        topology = api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=d.numa_node)])
    return api_pb2.Device(ID=d.id, health=HEALTHY if d.healthy else UNHEALTHY, topology=topology)


def _device_from_pb(d: Any) -> DeviceState:
    numa = d.topology.nodes[0].ID if d.HasField("topology") and d.topology.nodes else None
    return DeviceState(id=str(d.ID), healthy=d.health == HEALTHY, numa_node=numa)


def _allocation_to_pb(a: ContainerAllocation) -> Any:
    return api_pb2.ContainerAllocateResponse(
        envs=dict(a.envs),
        mounts=[
            api_pb2.Mount(
                container_path=m.container_path, host_path=m.host_path, read_only=m.read_only
            )
            for m in a.mounts
        ],
        devices=[
            api_pb2.DeviceSpec(
                container_path=d.container_path, host_path=d.host_path, permissions=d.permissions
            )
            for d in a.devices
        ],
        annotations=dict(a.annotations),
        cdi_devices=[api_pb2.CDIDevice(name=n) for n in a.cdi_devices],
    )


def _allocation_from_pb(r: Any) -> ContainerAllocation:
    return ContainerAllocation(
        envs=dict(r.envs),
        mounts=tuple(
            HostMount(host_path=m.host_path, container_path=m.container_path, read_only=m.read_only)
            for m in r.mounts
        ),
        devices=tuple(
            DeviceNode(
                host_path=d.host_path, container_path=d.container_path, permissions=d.permissions
            )
            for d in r.devices
        ),
        annotations=dict(r.annotations),
        cdi_devices=tuple(c.name for c in r.cdi_devices),
    )


def _options_to_pb(o: PluginOptions) -> Any:
    return api_pb2.DevicePluginOptions(
        pre_start_required=o.pre_start_required,
        get_preferred_allocation_available=o.get_preferred_allocation_available,
    )


def _options_from_pb(o: Any) -> PluginOptions:
    return PluginOptions(
        pre_start_required=bool(o.pre_start_required),
        get_preferred_allocation_available=bool(o.get_preferred_allocation_available),
    )


# ---- plugin side ---------------------------------------------------------------------------


def _abort_for(context: Any, exc: Exception) -> None:
    if isinstance(exc, LookupError):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(exc, ValueError):
        code = grpc.StatusCode.INVALID_ARGUMENT
    else:
        code = grpc.StatusCode.FAILED_PRECONDITION
    context.abort(code, str(exc))


class _Servicer(api_pb2_grpc.DevicePluginServicer):  # type: ignore[misc]
    def __init__(self, handlers: DevicePluginHandlers) -> None:
        self._h = handlers

    def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:  # noqa: N802
        return _options_to_pb(self._h.options())

    def ListAndWatch(self, request: Any, context: Any) -> Iterator[Any]:  # noqa: N802
        for devices in self._h.watch_devices(is_active=context.is_active):
            yield api_pb2.ListAndWatchResponse(devices=[_device_to_pb(d) for d in devices])

    def GetPreferredAllocation(self, request: Any, context: Any) -> Any:  # noqa: N802
        reqs = [
            PreferredRequest(
                available=list(r.available_deviceIDs),
                must_include=list(r.must_include_deviceIDs),
                size=int(r.allocation_size),
            )
            for r in request.container_requests
        ]
        try:
            picks = self._h.preferred_allocation(requests=reqs)
        except (LookupError, ValueError, RuntimeError) as exc:
            _abort_for(context, exc)
            raise
        return api_pb2.PreferredAllocationResponse(
            container_responses=[
                api_pb2.ContainerPreferredAllocationResponse(deviceIDs=list(p)) for p in picks
            ]
        )

    def Allocate(self, request: Any, context: Any) -> Any:  # noqa: N802
        reqs = [list(r.devices_ids) for r in request.container_requests]
        try:
            allocations = self._h.allocate(requests=reqs)
        except (LookupError, ValueError, RuntimeError) as exc:
            _abort_for(context, exc)
            raise
        return api_pb2.AllocateResponse(
            container_responses=[_allocation_to_pb(a) for a in allocations]
        )

    def PreStartContainer(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            self._h.pre_start_container(device_ids=list(request.devices_ids))
        except (LookupError, ValueError, RuntimeError) as exc:
            _abort_for(context, exc)
            raise
        return api_pb2.PreStartContainerResponse()


def add_device_plugin(server: grpc.Server, handlers: DevicePluginHandlers) -> None:
    """Serve `handlers` as the DevicePlugin service on `server`."""
    api_pb2_grpc.add_DevicePluginServicer_to_server(_Servicer(handlers), server)


def register_with_kubelet(
    *,
    kubelet_socket: Path,
    endpoint: str,
    resource_name: str,
    options: PluginOptions,
    timeout_s: float = 10.0,
) -> None:
    """Call Registration.Register on the kubelet. Raises `grpc.RpcError` when refused."""
    with grpc.insecure_channel(unix_target(kubelet_socket)) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        stub = api_pb2_grpc.RegistrationStub(channel)
        stub.Register(
            api_pb2.RegisterRequest(
                version=API_VERSION,
                endpoint=endpoint,
                resource_name=resource_name,
                options=_options_to_pb(options),
            ),
            timeout=timeout_s,
        )


# ---- kubelet side (used by the test harness and by `naaice agent` diagnostics) -------------


class _RegistrationServicer(api_pb2_grpc.RegistrationServicer):  # type: ignore[misc]
    def __init__(self, on_register: Callable[[RegisterRequest], None]) -> None:
        self._on_register = on_register

    def Register(self, request: Any, context: Any) -> Any:  # noqa: N802
        req = RegisterRequest(
            version=str(request.version),
            endpoint=str(request.endpoint),
            resource_name=str(request.resource_name),
            options=_options_from_pb(request.options),
        )
        try:
            self._on_register(req)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (OSError, RuntimeError, grpc.RpcError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return api_pb2.Empty()


def add_registration_service(
    server: grpc.Server, on_register: Callable[[RegisterRequest], None]
) -> None:
    """Serve the kubelet's Registration service; `on_register` raises ValueError to refuse."""
    api_pb2_grpc.add_RegistrationServicer_to_server(_RegistrationServicer(on_register), server)


class DevicePluginClient:
    """What the kubelet's device manager calls on a plugin, in plain types."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(unix_target(socket_path))
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        self._stub = api_pb2_grpc.DevicePluginStub(self._channel)
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._streams: list[Any] = []

    def options(self) -> PluginOptions:
        return _options_from_pb(
            self._stub.GetDevicePluginOptions(api_pb2.Empty(), timeout=self._timeout)
        )

    def list_and_watch(self) -> Iterator[list[DeviceState]]:
        """The ListAndWatch stream; each item is the full device list. Ends on `close()`."""
        call = self._stub.ListAndWatch(api_pb2.Empty())
        with self._lock:
            self._streams.append(call)
        for response in call:
            yield [_device_from_pb(d) for d in response.devices]

    def allocate(self, requests: Sequence[Sequence[str]]) -> list[ContainerAllocation]:
        response = self._stub.Allocate(
            api_pb2.AllocateRequest(
                container_requests=[
                    api_pb2.ContainerAllocateRequest(devices_ids=list(r)) for r in requests
                ]
            ),
            timeout=self._timeout,
        )
        return [_allocation_from_pb(r) for r in response.container_responses]

    def preferred_allocation(self, requests: Sequence[PreferredRequest]) -> list[list[str]]:
        response = self._stub.GetPreferredAllocation(
            api_pb2.PreferredAllocationRequest(
                container_requests=[
                    api_pb2.ContainerPreferredAllocationRequest(
                        available_deviceIDs=list(r.available),
                        must_include_deviceIDs=list(r.must_include),
                        allocation_size=r.size,
                    )
                    for r in requests
                ]
            ),
            timeout=self._timeout,
        )
        return [list(r.deviceIDs) for r in response.container_responses]

    def pre_start_container(self, device_ids: Sequence[str]) -> None:
        self._stub.PreStartContainer(
            api_pb2.PreStartContainerRequest(devices_ids=list(device_ids)), timeout=self._timeout
        )

    def close(self) -> None:
        with self._lock:
            for call in self._streams:
                call.cancel()
            self._streams.clear()
        self._channel.close()
