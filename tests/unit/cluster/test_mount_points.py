"""Mount points the pod runner creates on the host are recorded and removed at teardown."""

from __future__ import annotations

from pathlib import Path

from naaice_cluster.controlplane import remove_created_mount_points
from naaice_cluster.podrunner._exec import _create_recorded
from naaice_cluster.podrunner.runner import CREATED_MOUNT_POINTS


def test_created_directories_and_files_are_removed_when_still_empty(tmp_path: Path) -> None:
    record = tmp_path / "pods" / CREATED_MOUNT_POINTS
    record.parent.mkdir()
    _create_recorded(tmp_path / "etc" / "naaice", is_dir=True, record=record)
    _create_recorded(tmp_path / "etc" / "conf" / "app.yaml", is_dir=False, record=record)
    assert (tmp_path / "etc" / "naaice").is_dir()
    assert (tmp_path / "etc" / "conf" / "app.yaml").is_file()

    remove_created_mount_points(record.parent)

    assert not (tmp_path / "etc").exists()


def test_existing_paths_and_filled_ones_are_left_alone(tmp_path: Path) -> None:
    record = tmp_path / "pods" / CREATED_MOUNT_POINTS
    record.parent.mkdir()
    (tmp_path / "etc").mkdir()
    _create_recorded(tmp_path / "etc" / "a", is_dir=True, record=record)
    _create_recorded(tmp_path / "etc" / "b", is_dir=True, record=record)
    (tmp_path / "etc" / "b" / "user-data").write_text("keep me")

    remove_created_mount_points(record.parent)

    assert not (tmp_path / "etc" / "a").exists()
    assert (tmp_path / "etc" / "b" / "user-data").read_text() == "keep me"
    assert record.read_text().splitlines() == [
        str(tmp_path / "etc" / "a"),
        str(tmp_path / "etc" / "b"),
    ]
