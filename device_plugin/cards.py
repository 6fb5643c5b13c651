"""Card profiles: where the device plugin's cards come from, behind one interface.

`EmulatedProfile` advertises one card per software NAA this node is responsible for, with IDs
seeded from the node name (stable across agent restarts); its health is what the inventory's
probes last saw. `RealProfile` reads Xilinx/AMD FPGA cards (PCI vendor 0x10ee) from sysfs and
exposes their device nodes. Called by `device_plugin.plugin` (discover, allocation, pre-start)
and by `device_plugin.agent` (feeds the emulated profile from the inventory).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from device_plugin.errors import AgentConfigError, CardUnavailableError
from device_plugin.kubelet_api import DeviceNode

__all__ = [
    "XILINX_VENDOR_ID",
    "Card",
    "CardProfile",
    "EmulatedProfile",
    "NAABacking",
    "RealProfile",
    "emulated_card_id",
    "make_profile",
]

XILINX_VENDOR_ID = "0x10ee"
# A fixed namespace so uuid5(node/naa) is the same on every agent start and every machine.
_ID_NAMESPACE = uuid.UUID("6b3c6f0e-2d7a-5c55-9a4e-8c1f0f7e0a11")
_BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


@dataclass(frozen=True, slots=True)
class Card:
    """One schedulable card as the plugin advertises it."""

    id: str
    healthy: bool
    reason: str
    numa_node: int | None = None
    naa: str | None = None
    management_endpoint: str | None = None
    pci_address: str | None = None
    device_nodes: tuple[DeviceNode, ...] = ()
    functions: tuple[str, ...] = ()


class CardProfile(Protocol):
    """Narrow interface shared by emulated and real cards."""

    @property
    def name(self) -> str: ...

    def discover(self) -> list[Card]:
        """The current cards with their health."""
        ...

    def pre_start(self, cards: Sequence[Card]) -> None:
        """Check the cards right before a container starts; raise CardUnavailableError."""
        ...


def emulated_card_id(*, node_name: str, naa: str) -> str:
    """Stable card ID of software NAA `naa` seen from node `node_name`."""
    return f"emu-{uuid.uuid5(_ID_NAMESPACE, f'{node_name}/{naa}')}"


@dataclass(frozen=True, slots=True)
class NAABacking:
    """A software NAA behind an emulated card, as the inventory last probed it."""

    naa: str
    management_endpoint: str
    healthy: bool
    reason: str


@dataclass
class EmulatedProfile:
    """Cards backed by software NAAs. `checker`, when given, does a real management round trip
    in PreStartContainer (the agent passes the inventory's health probe)."""

    node_name: str
    checker: Callable[[Card], None] | None = None
    _backing: list[NAABacking] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.node_name:
            raise AgentConfigError(
                "the emulated card profile needs the node name (--node-name / NAAICE_NODE_NAME)"
            )

    @property
    def name(self) -> str:
        return "emulated"

    def set_backing(self, backing: Sequence[NAABacking]) -> None:
        with self._lock:
            self._backing = sorted(backing, key=lambda b: b.naa)

    def discover(self) -> list[Card]:
        with self._lock:
            backing = list(self._backing)
        return [
            Card(
                id=emulated_card_id(node_name=self.node_name, naa=b.naa),
                healthy=b.healthy,
                reason=b.reason,
                naa=b.naa,
                management_endpoint=b.management_endpoint,
            )
            for b in backing
        ]

    def pre_start(self, cards: Sequence[Card]) -> None:
        for card in cards:
            if not card.healthy:
                raise CardUnavailableError(
                    f"card {card.id} (NAA {card.naa}) is unhealthy: {card.reason}"
                )
            if self.checker is not None:
                self.checker(card)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class RealProfile:
    """Xilinx/AMD FPGA cards found under `<sysfs_root>/bus/pci/devices`.

    One card per physical device (domain:bus:device); its PCI functions (e.g. the management
    function .0 bound to `xclmgmt` and the user function .1 bound to `xocl`) are grouped. Device
    nodes are found the way udev names them: every `uevent` with a `DEVNAME=` below a function's
    sysfs directory becomes `/dev/<DEVNAME>` (e.g. `dri/renderD128`, `xclmgmt15360`). A card is
    healthy when every function is bound to a driver and reports no fatal AER errors."""

    sysfs_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")

    @property
    def name(self) -> str:
        return "real"

    def discover(self) -> list[Card]:
        devices_dir = self.sysfs_root / "bus" / "pci" / "devices"
        groups: dict[str, list[Path]] = {}
        try:
            entries = sorted(devices_dir.iterdir())
        except OSError:
            return []
        for fn in entries:
            if not _BDF.match(fn.name) or _read(fn / "vendor") != XILINX_VENDOR_ID:
                continue
            groups.setdefault(fn.name.rsplit(".", 1)[0], []).append(fn)
        return [self._card(slot, fns) for slot, fns in sorted(groups.items())]

    def _card(self, slot: str, functions: list[Path]) -> Card:
        problems: list[str] = []
        nodes: list[DeviceNode] = []
        numa: int | None = None
        for fn in functions:
            driver = fn / "driver"
            if not driver.exists():
                problems.append(f"{fn.name} is not bound to a driver")
            fatal = _read(fn / "aer_dev_fatal")
            if fatal and _aer_total(fatal) > 0:
                problems.append(f"{fn.name} reported {_aer_total(fatal)} fatal AER errors")
            numa_raw = _read(fn / "numa_node")
            if numa_raw is not None and numa_raw.lstrip("-").isdigit() and int(numa_raw) >= 0:
                numa = int(numa_raw)
            nodes.extend(self._device_nodes(fn))
        return Card(
            id=f"pci-{slot}",
            healthy=not problems,
            reason="; ".join(problems) if problems else "bound to its driver, no fatal AER errors",
            numa_node=numa,
            pci_address=slot,
            device_nodes=tuple(nodes),
            functions=tuple(fn.name for fn in functions),
        )

    def _device_nodes(self, fn: Path) -> list[DeviceNode]:
        found: list[DeviceNode] = []
        for uevent in sorted(fn.glob("*/*/uevent")) + sorted(fn.glob("*/uevent")):
            text = _read(uevent) or ""
            for line in text.splitlines():
                if line.startswith("DEVNAME="):
                    rel = line.removeprefix("DEVNAME=")
                    path = str(self.dev_root / rel)
                    found.append(DeviceNode(host_path=path, container_path=f"/dev/{rel}"))
        return found

    def pre_start(self, cards: Sequence[Card]) -> None:
        current = {c.id: c for c in self.discover()}
        for card in cards:
            now = current.get(card.id)
            if now is None:
                raise CardUnavailableError(
                    f"card {card.id} disappeared from {self.sysfs_root}/bus/pci/devices; check "
                    f"that the FPGA is still enumerated (lspci -d 10ee:)"
                )
            if not now.healthy:
                raise CardUnavailableError(f"card {card.id} is unhealthy: {now.reason}")


def _aer_total(text: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in {"TOTAL_ERR_FATAL", "TOTAL_ERR"} and parts[1].isdigit():
            return int(parts[1])
    return 0


def make_profile(*, name: str, node_name: str, sysfs_root: Path) -> CardProfile:
    """The profile selected by `--card-profile`."""
    if name == "emulated":
        return EmulatedProfile(node_name=node_name)
    if name == "real":
        return RealProfile(sysfs_root=sysfs_root)
    raise AgentConfigError(
        f"unknown card profile {name!r}; use --card-profile emulated (software NAAs) or real "
        f"(Xilinx/AMD cards from sysfs)"
    )
