"""Mount points the pod runner creates on the host are recorded and removed at teardown."""

from __future__ import annotations

from pathlib import Path

import pytest

from naaice_cluster.controlplane import mount_points_in_use, remove_created_mount_points
from naaice_cluster.podrunner._exec import create_recorded
from naaice_cluster.podrunner.runner import CREATED_MOUNT_POINTS, namespaces_available


def test_created_directories_and_files_are_removed_when_still_empty(tmp_path: Path) -> None:
    record = tmp_path / "pods" / CREATED_MOUNT_POINTS
    record.parent.mkdir()
    create_recorded(tmp_path / "etc" / "naaice", is_dir=True, record=record)
    create_recorded(tmp_path / "etc" / "conf" / "app.yaml", is_dir=False, record=record)
    assert (tmp_path / "etc" / "naaice").is_dir()
    assert (tmp_path / "etc" / "conf" / "app.yaml").is_file()

    remove_created_mount_points(record.parent)

    assert not (tmp_path / "etc").exists()


def test_existing_paths_and_filled_ones_are_left_alone(tmp_path: Path) -> None:
    record = tmp_path / "pods" / CREATED_MOUNT_POINTS
    record.parent.mkdir()
    (tmp_path / "etc").mkdir()
    create_recorded(tmp_path / "etc" / "a", is_dir=True, record=record)
    create_recorded(tmp_path / "etc" / "b", is_dir=True, record=record)
    (tmp_path / "etc" / "b" / "user-data").write_text("keep me")

    remove_created_mount_points(record.parent)

    assert not (tmp_path / "etc" / "a").exists()
    assert (tmp_path / "etc" / "b" / "user-data").read_text() == "keep me"
    assert record.read_text().splitlines() == [
        str(tmp_path / "etc" / "a"),
        str(tmp_path / "etc" / "b"),
    ]


def test_a_mount_point_another_namespace_still_uses_is_kept(tmp_path: Path) -> None:
    import subprocess
    import time

    if not namespaces_available():
        pytest.skip("needs the privilege to create mount namespaces (root)")
    record = tmp_path / "pods" / CREATED_MOUNT_POINTS
    record.parent.mkdir()
    source = tmp_path / "src"
    source.mkdir()
    target = tmp_path / "shared" / "conf"
    create_recorded(target, is_dir=True, record=record)
    # Another "pod": a process in its own mount namespace with a bind mount on the target.
    holder = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind {source} {target} && echo ready && exec sleep 30",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while str(target) not in mount_points_in_use():
            assert time.monotonic() < deadline, "the mount never showed in /proc/*/mountinfo"
            time.sleep(0.05)
        remove_created_mount_points(record.parent)
        assert target.is_dir()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    remove_created_mount_points(record.parent)
    assert not (tmp_path / "shared").exists()
