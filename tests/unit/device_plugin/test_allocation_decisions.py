"""Pure Allocate / preferred-allocation / CDI decisions."""

from __future__ import annotations

import json

import pytest

from device_plugin.allocation import (
    build_allocation,
    preferred_allocation,
    render_cdi_spec,
    resolve_cards,
)
from device_plugin.cards import Card
from device_plugin.errors import AllocationRequestError, CardUnavailableError, UnknownCardError
from device_plugin.kubelet_api import DeviceNode


def _card(i: int, *, numa: int | None = 0, healthy: bool = True) -> Card:
    return Card(
        id=f"c{i}",
        healthy=healthy,
        reason="ok" if healthy else "down",
        numa_node=numa,
        pci_address=f"0000:{i:02x}:00",
        device_nodes=(DeviceNode(host_path=f"/dev/dri/renderD{128 + i}", container_path="x"),),
    )


def test_allocation_for_real_cards_carries_device_nodes_and_pci_addresses() -> None:
    alloc = build_allocation(cards=[_card(1), _card(2)], cdi=True)
    assert alloc.envs["NAAICE_PCI_ADDRESSES"] == "0000:01:00,0000:02:00"
    assert "NAAICE_NAA_NAMES" not in alloc.envs
    assert [d.host_path for d in alloc.devices] == ["/dev/dri/renderD129", "/dev/dri/renderD130"]
    assert list(alloc.cdi_devices) == ["naaice.io/naa=c1", "naaice.io/naa=c2"]
    assert not build_allocation(cards=[_card(1)], cdi=False).cdi_devices


def test_resolving_unknown_or_unhealthy_cards_says_why() -> None:
    cards = {"c1": _card(1), "c2": _card(2, healthy=False)}
    with pytest.raises(UnknownCardError, match="known: c1, c2"):
        resolve_cards(ids=["c9"], cards=cards)
    with pytest.raises(CardUnavailableError, match="down"):
        resolve_cards(ids=["c2"], cards=cards)


def test_preferred_allocation_stays_on_the_numa_node_of_the_must_include_cards() -> None:
    cards = {c.id: c for c in [_card(0, numa=0), _card(1, numa=1), _card(2, numa=1), _card(3)]}
    pick = preferred_allocation(
        available=["c0", "c1", "c2", "c3"], must_include=["c1"], size=2, cards=cards
    )
    assert pick == ["c1", "c2"]


def test_preferred_allocation_puts_unhealthy_cards_last() -> None:
    cards = {c.id: c for c in [_card(0, healthy=False), _card(1), _card(2)]}
    assert preferred_allocation(
        available=["c0", "c1", "c2"], must_include=[], size=2, cards=cards
    ) == ["c1", "c2"]


@pytest.mark.parametrize(
    ("available", "must", "size", "message"),
    [
        (["c0"], ["c0"], 0, "smaller than"),
        (["c0"], [], 2, "exceeds"),
        (["c0", "c1"], ["c5"], 1, "not in the available set"),
    ],
)
def test_inconsistent_preferred_requests_are_refused(
    available: list[str], must: list[str], size: int, message: str
) -> None:
    with pytest.raises(AllocationRequestError, match=message):
        preferred_allocation(available=available, must_include=must, size=size, cards={})


def test_the_cdi_spec_names_every_card_with_its_edits() -> None:
    spec = json.loads(render_cdi_spec(cards=[_card(1)]))
    assert spec["kind"] == "naaice.io/naa"
    (dev,) = spec["devices"]
    assert dev["name"] == "c1"
    assert "NAAICE_CARD_IDS=c1" in dev["containerEdits"]["env"]
    assert dev["containerEdits"]["deviceNodes"][0]["hostPath"] == "/dev/dri/renderD129"
