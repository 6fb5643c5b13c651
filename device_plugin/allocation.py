"""Pure decisions of the device plugin: the Allocate response for a set of cards, the preferred
allocation, and the CDI spec that backs the CDI device names. No sockets, no files: called by
`device_plugin.plugin` and tested directly.

The Allocate response is built from a chain of small helpers, each adding one kind of artifact
(env, device nodes, CDI names, annotations) so a profile only changes what it needs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from device_plugin.cards import Card
from device_plugin.errors import AllocationRequestError, CardUnavailableError, UnknownCardError
from device_plugin.kubelet_api import ContainerAllocation, DeviceNode

__all__ = [
    "CDI_KIND",
    "RESOURCE_NAME",
    "build_allocation",
    "cdi_device_name",
    "preferred_allocation",
    "render_cdi_spec",
    "resolve_cards",
]

RESOURCE_NAME = "naaice.io/naa"
CDI_KIND = "naaice.io/naa"
CDI_VERSION = "0.6.0"


def cdi_device_name(card: Card) -> str:
    """Fully qualified CDI name of a card, e.g. `naaice.io/naa=emu-…`."""
    return f"{CDI_KIND}={card.id}"


def resolve_cards(*, ids: Sequence[str], cards: Mapping[str, Card]) -> list[Card]:
    """Look the requested IDs up; unknown or unhealthy cards fail the request with a reason."""
    out: list[Card] = []
    for device_id in ids:
        card = cards.get(device_id)
        if card is None:
            raise UnknownCardError(
                f"device {device_id!r} is not advertised by this plugin (known: "
                f"{', '.join(sorted(cards)) or 'none'}); the kubelet's checkpoint may be stale"
            )
        if not card.healthy:
            raise CardUnavailableError(
                f"device {device_id} is unhealthy ({card.reason}); the kubelet will retry "
                f"after the next ListAndWatch update"
            )
        out.append(card)
    return out


@dataclass
class _Draft:
    envs: dict[str, str] = field(default_factory=dict)
    devices: list[DeviceNode] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    cdi: list[str] = field(default_factory=list)


def _with_card_ids(d: _Draft, cards: Sequence[Card]) -> None:
    d.envs["NAAICE_CARD_IDS"] = ",".join(c.id for c in cards)


def _with_naas(d: _Draft, cards: Sequence[Card]) -> None:
    naas = [c for c in cards if c.naa is not None]
    if naas:
        d.envs["NAAICE_NAA_NAMES"] = ",".join(c.naa or "" for c in naas)
        d.envs["NAAICE_NAA_MANAGEMENT_ENDPOINTS"] = ",".join(
            c.management_endpoint or "" for c in naas
        )


def _with_pci(d: _Draft, cards: Sequence[Card]) -> None:
    pci = [c.pci_address for c in cards if c.pci_address]
    if pci:
        d.envs["NAAICE_PCI_ADDRESSES"] = ",".join(a for a in pci if a)


def _with_device_nodes(d: _Draft, cards: Sequence[Card]) -> None:
    seen: set[str] = set()
    for card in cards:
        for node in card.device_nodes:
            if node.host_path not in seen:
                seen.add(node.host_path)
                d.devices.append(node)


def _with_cdi(d: _Draft, cards: Sequence[Card]) -> None:
    d.cdi.extend(cdi_device_name(c) for c in cards)


def _with_annotations(d: _Draft, cards: Sequence[Card]) -> None:
    d.annotations["naaice.io/cards"] = ",".join(c.id for c in cards)


_CHAIN: tuple[Callable[[_Draft, Sequence[Card]], None], ...] = (
    _with_card_ids,
    _with_naas,
    _with_pci,
    _with_device_nodes,
    _with_annotations,
)


def build_allocation(*, cards: Sequence[Card], cdi: bool) -> ContainerAllocation:
    """The container's artifacts for `cards`: env (IDs, NAA names and management endpoints or
    PCI addresses), device nodes, annotations, and CDI device names when a CDI spec is written."""
    draft = _Draft()
    for step in _CHAIN:
        step(draft, cards)
    if cdi:
        _with_cdi(draft, cards)
    return ContainerAllocation(
        envs=draft.envs,
        devices=tuple(draft.devices),
        annotations=draft.annotations,
        cdi_devices=tuple(draft.cdi),
    )


def preferred_allocation(
    *,
    available: Sequence[str],
    must_include: Sequence[str],
    size: int,
    cards: Mapping[str, Card],
) -> list[str]:
    """Pick `size` IDs: the must-include ones, then healthy cards on the NUMA node that already
    holds most of the pick (or most of the available cards), then the rest, by ID for
    determinism."""
    avail = list(dict.fromkeys(available))
    must = list(dict.fromkeys(must_include))
    if size < len(must):
        raise AllocationRequestError(
            f"allocation size {size} is smaller than the {len(must)} must-include devices"
        )
    if size > len(avail):
        raise AllocationRequestError(
            f"allocation size {size} exceeds the {len(avail)} available devices"
        )
    missing = [m for m in must if m not in avail]
    if missing:
        raise AllocationRequestError(f"must-include devices {missing} are not in the available set")
    pick = list(must)
    basis = must or avail
    numa_votes = Counter(
        cards[i].numa_node for i in basis if i in cards and cards[i].numa_node is not None
    )
    home = numa_votes.most_common(1)[0][0] if numa_votes else None

    def rank(device_id: str) -> tuple[bool, bool, str]:
        card = cards.get(device_id)
        healthy = card is not None and card.healthy
        local = card is not None and (home is None or card.numa_node == home)
        return (not healthy, not local, device_id)

    rest = sorted((i for i in avail if i not in pick), key=rank)
    pick.extend(rest[: size - len(pick)])
    return pick


def render_cdi_spec(*, cards: Sequence[Card]) -> str:
    """A CDI spec (JSON) naming every card, so runtimes with CDI enabled can resolve the names
    Allocate returns; each device carries the same env and device nodes as Allocate."""
    devices = []
    for card in cards:
        alloc = build_allocation(cards=[card], cdi=False)
        edits: dict[str, object] = {"env": [f"{k}={v}" for k, v in sorted(alloc.envs.items())]}
        if alloc.devices:
            edits["deviceNodes"] = [
                {"path": n.container_path, "hostPath": n.host_path, "permissions": n.permissions}
                for n in alloc.devices
            ]
        devices.append({"name": card.id, "containerEdits": edits})
    return json.dumps({"cdiVersion": CDI_VERSION, "kind": CDI_KIND, "devices": devices}, indent=2)
