"""The device plugin driven by a kubelet-side harness over real gRPC on unix sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from device_plugin.cards import EmulatedProfile, NAABacking, emulated_card_id
from device_plugin.kubelet_api import PreferredRequest
from device_plugin.plugin import DevicePlugin
from tests.integration.device_plugin.kubelet_harness import KubeletHarness

NODE = "node-a"


def _backing(*unhealthy: str, n: int = 3) -> list[NAABacking]:
    return [
        NAABacking(
            naa=f"naa-{i}",
            management_endpoint=f"http://127.0.0.{10 + i}:8080",
            healthy=f"naa-{i}" not in unhealthy,
            reason="probe failed: connection refused" if f"naa-{i}" in unhealthy else "Ready",
        )
        for i in range(n)
    ]


def _id(i: int) -> str:
    return emulated_card_id(node_name=NODE, naa=f"naa-{i}")


@pytest.fixture
def profile() -> EmulatedProfile:
    p = EmulatedProfile(node_name=NODE)
    p.set_backing(_backing())
    return p


@pytest.fixture
def plugin(
    profile: EmulatedProfile, plugin_dir: Path, kubelet: KubeletHarness
) -> Iterator[DevicePlugin]:
    dp = DevicePlugin(profile=profile, kubelet_dir=plugin_dir, cdi_dir=plugin_dir / "cdi")
    dp.start()
    yield dp
    dp.stop()


def test_the_plugin_registers_and_the_kubelet_receives_its_cards(
    plugin: DevicePlugin, kubelet: KubeletHarness
) -> None:
    kubelet.wait_registrations(1)
    req = kubelet.registrations[0]
    assert (req.version, req.resource_name, req.endpoint) == (
        "v1beta1",
        "naaice.io/naa",
        "naaice-naa.sock",
    )
    assert kubelet.options.pre_start_required
    assert kubelet.options.get_preferred_allocation_available
    devices = kubelet.wait_for(lambda d: len(d) == 3)
    assert {d.id for d in devices} == {_id(0), _id(1), _id(2)}
    assert all(d.healthy for d in devices)


def test_card_ids_are_stable_across_plugin_restarts(
    profile: EmulatedProfile, plugin_dir: Path, kubelet: KubeletHarness
) -> None:
    seen = []
    for _ in range(2):
        dp = DevicePlugin(profile=EmulatedProfile(node_name=NODE), kubelet_dir=plugin_dir)
        dp.profile.set_backing(_backing())  # type: ignore[attr-defined]
        dp.start()
        seen.append({d.id for d in kubelet.wait_for(lambda d: len(d) == 3)})
        dp.stop()
    assert seen[0] == seen[1]
    other = EmulatedProfile(node_name="node-b")
    other.set_backing(_backing())
    assert {c.id for c in other.discover()}.isdisjoint(seen[0])


def test_allocate_returns_ids_endpoints_and_cdi_names(
    plugin: DevicePlugin, kubelet: KubeletHarness
) -> None:
    kubelet.wait_for(lambda d: len(d) == 3)
    (alloc,) = kubelet.client.allocate([[_id(2), _id(0)]])
    assert alloc.envs["NAAICE_CARD_IDS"] == f"{_id(2)},{_id(0)}"
    assert alloc.envs["NAAICE_NAA_NAMES"] == "naa-2,naa-0"
    assert alloc.envs["NAAICE_NAA_MANAGEMENT_ENDPOINTS"] == (
        "http://127.0.0.12:8080,http://127.0.0.10:8080"
    )
    assert list(alloc.cdi_devices) == [f"naaice.io/naa={_id(2)}", f"naaice.io/naa={_id(0)}"]
    spec = (plugin.cdi_dir / "naaice.io-naa.json").read_text()  # type: ignore[operator]
    assert _id(2) in spec


def test_allocating_an_unknown_card_fails_with_not_found(
    plugin: DevicePlugin, kubelet: KubeletHarness
) -> None:
    kubelet.wait_for(lambda d: len(d) == 3)
    with pytest.raises(grpc.RpcError) as err:
        kubelet.client.allocate([["emu-nope"]])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "not advertised by this plugin" in err.value.details()


def test_preferred_allocation_keeps_must_include_and_prefers_healthy_cards(
    plugin: DevicePlugin, profile: EmulatedProfile, kubelet: KubeletHarness
) -> None:
    profile.set_backing(_backing("naa-0"))
    plugin.refresh()
    kubelet.wait_for(lambda d: sum(not x.healthy for x in d) == 1)
    (pick,) = kubelet.client.preferred_allocation(
        [PreferredRequest(available=[_id(0), _id(1), _id(2)], must_include=[_id(2)], size=2)]
    )
    assert pick == [_id(2), _id(1)]
    with pytest.raises(grpc.RpcError) as err:
        kubelet.client.preferred_allocation(
            [PreferredRequest(available=[_id(0)], must_include=[], size=2)]
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_card_turning_unhealthy_and_back_is_resent_on_the_stream(
    plugin: DevicePlugin, profile: EmulatedProfile, kubelet: KubeletHarness
) -> None:
    kubelet.wait_for(lambda d: len(d) == 3 and all(x.healthy for x in d))
    profile.set_backing(_backing("naa-1"))  # the watcher's next poll picks this up
    down = kubelet.wait_for(lambda d: any(not x.healthy for x in d))
    assert [x.id for x in down if not x.healthy] == [_id(1)]
    with pytest.raises(grpc.RpcError) as err:
        kubelet.client.pre_start_container([_id(1)])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "connection refused" in err.value.details()
    profile.set_backing(_backing())
    kubelet.wait_for(lambda d: len(d) == 3 and all(x.healthy for x in d))
    kubelet.client.pre_start_container([_id(1)])


def test_after_a_kubelet_restart_the_plugin_registers_again_and_streams_its_cards(
    plugin: DevicePlugin, kubelet: KubeletHarness
) -> None:
    kubelet.wait_registrations(1)
    kubelet.wait_for(lambda d: len(d) == 3)
    kubelet.restart()  # kubelet.sock and the plugin's socket are deleted; a new kubelet.sock
    kubelet.wait_registrations(2)
    assert kubelet.wait_for(lambda d: len(d) == 3)
    assert plugin.socket_path.exists()
    (alloc,) = kubelet.client.allocate([[_id(0)]])
    assert alloc.envs["NAAICE_NAA_NAMES"] == "naa-0"


def test_a_plugin_started_before_the_kubelet_registers_once_it_appears(
    profile: EmulatedProfile, plugin_dir: Path
) -> None:
    dp = DevicePlugin(profile=profile, kubelet_dir=plugin_dir)
    dp.start()
    harness = KubeletHarness(plugin_dir)
    try:
        harness.start()
        harness.wait_registrations(1)
        assert len(harness.wait_for(lambda d: len(d) == 3)) == 3
    finally:
        harness.stop()
        dp.stop()
