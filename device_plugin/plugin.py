"""The kubelet device plugin server: serves DevicePlugin on a unix socket in the kubelet's
device-plugin directory, registers with the kubelet, re-sends the device list on every change,
and re-registers whenever the kubelet restarts (its `kubelet.sock` is recreated, or our own
socket is removed, which the kubelet does on start).

Called by `device_plugin.agent` (start/stop, `refresh()` after each health probe round) and by
the kubelet harness in tests/integration/device_plugin.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc

from device_plugin.allocation import (
    RESOURCE_NAME,
    build_allocation,
    preferred_allocation,
    render_cdi_spec,
    resolve_cards,
)
from device_plugin.cards import Card, CardProfile
from device_plugin.kubelet_api import (
    KUBELET_SOCKET,
    ContainerAllocation,
    DeviceState,
    PluginOptions,
    PreferredRequest,
    add_device_plugin,
    register_with_kubelet,
)

__all__ = ["DEFAULT_KUBELET_DIR", "DevicePlugin"]

log = logging.getLogger(__name__)

DEFAULT_KUBELET_DIR = Path("/var/lib/kubelet/device-plugins")


@dataclass(frozen=True, slots=True)
class _SocketId:
    inode: int
    ctime_ns: int


def _socket_id(path: Path) -> _SocketId | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _SocketId(st.st_ino, st.st_ctime_ns)


class DevicePlugin:
    """One resource (`naaice.io/naa`) served to the kubelet from a card profile."""

    def __init__(
        self,
        *,
        profile: CardProfile,
        kubelet_dir: Path = DEFAULT_KUBELET_DIR,
        resource_name: str = RESOURCE_NAME,
        socket_name: str = "naaice-naa.sock",
        cdi_dir: Path | None = None,
        poll_s: float = 0.2,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.profile = profile
        self.kubelet_dir = kubelet_dir
        self.resource_name = resource_name
        self.socket_name = socket_name
        self.cdi_dir = cdi_dir
        self.poll_s = poll_s
        self._on_event = on_event
        self._cond = threading.Condition()
        self._cards: dict[str, Card] = {}
        self._version = 0
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None
        self._watcher: threading.Thread | None = None
        self._registered_kubelet: _SocketId | None = None
        self._own_socket: _SocketId | None = None
        self.registrations = 0

    # ---- DevicePluginHandlers -----------------------------------------------------------

    def options(self) -> PluginOptions:
        return PluginOptions(pre_start_required=True, get_preferred_allocation_available=True)

    def watch_devices(self, *, is_active: Callable[[], bool]) -> Iterator[Sequence[DeviceState]]:
        sent = -1
        while not self._stopping.is_set() and is_active():
            with self._cond:
                self._cond.wait_for(partial(self._changed_since, sent), timeout=0.5)
                if self._stopping.is_set() or self._version == sent:
                    continue
                sent = self._version
                devices = [
                    DeviceState(id=c.id, healthy=c.healthy, numa_node=c.numa_node)
                    for c in self._cards.values()
                ]
            yield devices

    def _changed_since(self, version: int) -> bool:
        return self._version != version or self._stopping.is_set()

    def allocate(self, *, requests: Sequence[Sequence[str]]) -> Sequence[ContainerAllocation]:
        with self._cond:
            cards = dict(self._cards)
        cdi = self.cdi_dir is not None
        return [
            build_allocation(cards=resolve_cards(ids=ids, cards=cards), cdi=cdi) for ids in requests
        ]

    def preferred_allocation(
        self, *, requests: Sequence[PreferredRequest]
    ) -> Sequence[Sequence[str]]:
        with self._cond:
            cards = dict(self._cards)
        return [
            preferred_allocation(
                available=r.available, must_include=r.must_include, size=r.size, cards=cards
            )
            for r in requests
        ]

    def pre_start_container(self, *, device_ids: Sequence[str]) -> None:
        with self._cond:
            cards = dict(self._cards)
        self.profile.pre_start(resolve_cards(ids=device_ids, cards=cards))

    # ---- inventory ----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Re-read the profile; bump the version (and wake every ListAndWatch stream) when the
        set of cards or any card's health changed. Returns whether it changed."""
        cards = {c.id: c for c in self.profile.discover()}
        with self._cond:
            changed = {k: (c.healthy, c.numa_node) for k, c in cards.items()} != {
                k: (c.healthy, c.numa_node) for k, c in self._cards.items()
            }
            self._cards = cards
            if changed:
                self._version += 1
                self._cond.notify_all()
        if changed:
            self._write_cdi_spec(list(cards.values()))
            self._event(
                "devices: "
                + ", ".join(
                    f"{c.id}={'Healthy' if c.healthy else 'Unhealthy'}" for c in cards.values()
                )
            )
        return changed

    def cards(self) -> list[Card]:
        with self._cond:
            return list(self._cards.values())

    def _write_cdi_spec(self, cards: list[Card]) -> None:
        if self.cdi_dir is None:
            return
        self.cdi_dir.mkdir(parents=True, exist_ok=True)
        target = self.cdi_dir / "naaice.io-naa.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(render_cdi_spec(cards=cards))
        os.replace(tmp, target)

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.kubelet_dir / self.socket_name

    def start(self) -> None:
        """Serve, register if the kubelet is up, and watch for kubelet restarts."""
        self.refresh()
        self._serve()
        self._try_register()
        self._watcher = threading.Thread(target=self._watch, name="kubelet-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._stop_server()

    def _serve(self) -> None:
        self._stop_server()
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="dp"))
        add_device_plugin(server, self)
        server.add_insecure_port(f"unix://{self.socket_path.resolve()}")
        server.start()
        self._server = server
        self._own_socket = _socket_id(self.socket_path)
        self._event(f"serving on {self.socket_path}")

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait()
            self._server = None

    def _try_register(self) -> None:
        kubelet = self.kubelet_dir / KUBELET_SOCKET
        ident = _socket_id(kubelet)
        if ident is None:
            return
        try:
            register_with_kubelet(
                kubelet_socket=kubelet,
                endpoint=self.socket_name,
                resource_name=self.resource_name,
                options=self.options(),
            )
        except grpc.RpcError as exc:
            self._event(f"registration with {kubelet} failed: {exc}; retrying")
            return
        except grpc.FutureTimeoutError:
            self._event(f"kubelet socket {kubelet} does not answer; retrying")
            return
        self._registered_kubelet = ident
        self.registrations += 1
        self._event(f"registered {self.resource_name} with the kubelet")

    def _watch(self) -> None:
        kubelet = self.kubelet_dir / KUBELET_SOCKET
        while not self._stopping.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # a profile error must not stop re-registration
                log.exception("card discovery failed")
            own = _socket_id(self.socket_path)
            if own is None or own != self._own_socket:
                # The kubelet wipes the plugin directory when it starts: serve again.
                self._serve()
                self._registered_kubelet = None
            current = _socket_id(kubelet)
            if current is not None and current != self._registered_kubelet:
                self._try_register()

    def _event(self, message: str) -> None:
        log.info("%s", message)
        if self._on_event is not None:
            self._on_event(message)
