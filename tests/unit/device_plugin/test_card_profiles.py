"""Card profiles: the real profile against a fake sysfs tree, the emulated profile's IDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_plugin.cards import EmulatedProfile, NAABacking, RealProfile, make_profile
from device_plugin.errors import AgentConfigError, CardUnavailableError


def _pci_function(
    root: Path,
    bdf: str,
    *,
    vendor: str = "0x10ee",
    driver: str | None = "xocl",
    numa: str = "1",
    devnames: tuple[str, ...] = (),
    fatal: int = 0,
) -> Path:
    fn = root / "bus" / "pci" / "devices" / bdf
    fn.mkdir(parents=True)
    (fn / "vendor").write_text(f"{vendor}\n")
    (fn / "numa_node").write_text(f"{numa}\n")
    (fn / "aer_dev_fatal").write_text(f"Undefined 0\nTOTAL_ERR_FATAL {fatal}\n")
    if driver is not None:
        drv = root / "bus" / "pci" / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        (fn / "driver").symlink_to(drv)
    for i, devname in enumerate(devnames):
        sub = fn / "class" / f"node{i}"
        sub.mkdir(parents=True)
        (sub / "uevent").write_text(f"MAJOR=226\nMINOR={128 + i}\nDEVNAME={devname}\n")
    return fn


def test_the_real_profile_groups_xilinx_functions_into_cards_with_their_device_nodes(
    tmp_path: Path,
) -> None:
    _pci_function(tmp_path, "0000:3b:00.0", driver="xclmgmt", devnames=("xclmgmt15104",))
    _pci_function(tmp_path, "0000:3b:00.1", devnames=("dri/renderD128",))
    _pci_function(tmp_path, "0000:5e:00.0", vendor="0x8086")  # not an FPGA
    (card,) = RealProfile(sysfs_root=tmp_path, dev_root=Path("/dev")).discover()
    assert card.id == "pci-0000:3b:00"
    assert card.functions == ("0000:3b:00.0", "0000:3b:00.1")
    assert card.healthy
    assert card.numa_node == 1
    assert [n.host_path for n in card.device_nodes] == ["/dev/xclmgmt15104", "/dev/dri/renderD128"]
    assert card.device_nodes[1].container_path == "/dev/dri/renderD128"


def test_a_function_without_a_driver_or_with_fatal_aer_errors_makes_the_card_unhealthy(
    tmp_path: Path,
) -> None:
    _pci_function(tmp_path, "0000:3b:00.0", driver=None)
    _pci_function(tmp_path, "0000:af:00.0", fatal=2, numa="-1")
    unbound, faulty = RealProfile(sysfs_root=tmp_path).discover()
    assert not unbound.healthy
    assert "not bound to a driver" in unbound.reason
    assert not faulty.healthy
    assert "2 fatal AER errors" in faulty.reason
    assert faulty.numa_node is None
    with pytest.raises(CardUnavailableError, match="unhealthy"):
        RealProfile(sysfs_root=tmp_path).pre_start([faulty])


def test_pre_start_fails_for_a_card_that_disappeared_from_sysfs(tmp_path: Path) -> None:
    fn = _pci_function(tmp_path, "0000:3b:00.0")
    profile = RealProfile(sysfs_root=tmp_path)
    (card,) = profile.discover()
    profile.pre_start([card])
    (fn / "vendor").unlink()
    with pytest.raises(CardUnavailableError, match="lspci -d 10ee:"):
        profile.pre_start([card])


def test_a_machine_without_pci_sysfs_has_no_real_cards(tmp_path: Path) -> None:
    assert RealProfile(sysfs_root=tmp_path / "missing").discover() == []


def test_emulated_ids_are_seeded_from_the_node_name_and_health_follows_the_backing() -> None:
    backing = [NAABacking(naa="naa-a", management_endpoint="http://x", healthy=False, reason="r")]
    one, two = EmulatedProfile(node_name="n1"), EmulatedProfile(node_name="n1")
    one.set_backing(backing)
    two.set_backing(backing)
    assert one.discover() == two.discover()
    (card,) = one.discover()
    assert card.id.startswith("emu-")
    assert len(card.id) <= 63
    assert not card.healthy
    with pytest.raises(CardUnavailableError, match="naa-a"):
        one.pre_start([card])


def test_an_unknown_profile_name_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match=r"emulated .* or real"):
        make_profile(name="gpu", node_name="n", sysfs_root=tmp_path)
    with pytest.raises(AgentConfigError, match="--node-name"):
        make_profile(name="emulated", node_name="", sysfs_root=tmp_path)


def test_naaice_agent_cards_lists_the_real_cards_of_a_sysfs_tree(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from device_plugin.cli import app

    _pci_function(tmp_path, "0000:3b:00.1", devnames=("dri/renderD128",))
    result = CliRunner().invoke(app, ["cards", "--sysfs-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "pci-0000:3b:00\tHealthy\tnuma=1\t/dev/dri/renderD128" in result.output
    empty = CliRunner().invoke(app, ["cards", "--sysfs-root", str(tmp_path / "none")])
    assert "no Xilinx/AMD FPGA functions" in empty.output
