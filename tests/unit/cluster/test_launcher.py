"""The container launcher (`podrunner._exec.launch_argv`): working directory, exec, exit codes
for a missing command and a failed preparation, and — with the privilege to create namespaces —
read-only bind mounts and the pod's hostname, invisible to the host."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from naaice_cluster.podrunner._exec import launch_argv
from naaice_cluster.podrunner.runner import CREATED_MOUNT_POINTS, namespaces_available


def _spec(tmp_path: Path, argv: list[str], **extra: Any) -> dict[str, Any]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    spec: dict[str, Any] = {
        "namespaces": False,
        "mounts": [],
        "hostname": "pod-a",
        "workingDir": str(work),
        "argv": argv,
        "createdMountPoints": str(tmp_path / CREATED_MOUNT_POINTS),
    }
    spec.update(extra)
    return spec


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def test_runs_the_command_in_its_working_directory_with_its_arguments(tmp_path: Path) -> None:
    res = _run(launch_argv(_spec(tmp_path, ["sh", "-c", 'pwd; printf "%s|" "$@"', "x", "a b", ""])))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [str(tmp_path / "work"), "a b||"]


def test_exit_status_of_the_command_is_the_containers(tmp_path: Path) -> None:
    assert _run(launch_argv(_spec(tmp_path, ["sh", "-c", "exit 7"]))).returncode == 7


def test_a_missing_command_exits_127_naming_it(tmp_path: Path) -> None:
    res = _run(launch_argv(_spec(tmp_path, ["no-such-command-naaice"])))
    assert res.returncode == 127
    assert "cannot run 'no-such-command-naaice'" in res.stderr


def test_a_missing_working_directory_exits_128(tmp_path: Path) -> None:
    spec = _spec(tmp_path, ["true"], workingDir=str(tmp_path / "gone"))
    res = _run(launch_argv(spec))
    assert res.returncode == 128
    assert "preparing the container failed" in res.stderr


@pytest.mark.skipif(not namespaces_available(), reason="needs mount namespaces (root)")
def test_read_only_bind_mounts_and_hostname_stay_inside_the_container(tmp_path: Path) -> None:
    source = tmp_path / "volume"
    source.mkdir()
    (source / "data.txt").write_text("from the volume")
    target = tmp_path / "mnt" / "conf"
    writable_src = tmp_path / "scratch"
    writable_src.mkdir()
    writable = tmp_path / "mnt" / "scratch"
    mounts = [
        {"source": str(source), "target": str(target), "readOnly": True},
        {"source": str(writable_src), "target": str(writable), "readOnly": False},
    ]
    script = (
        f"cat {target}/data.txt; echo; hostname; "
        f"touch {target}/x 2>/dev/null && echo writable || echo read-only; "
        f"touch {writable}/y && echo wrote"
    )
    spec = _spec(tmp_path, ["sh", "-c", script], namespaces=True, mounts=mounts)
    res = _run(launch_argv(spec))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["from the volume", "pod-a", "read-only", "wrote"]
    assert (writable_src / "y").exists()
    # The host sees neither the mounts nor the hostname; the created mount point is recorded.
    assert not (target / "data.txt").exists()
    assert socket.gethostname() != "pod-a"
    assert (tmp_path / CREATED_MOUNT_POINTS).read_text().splitlines() == [
        str(tmp_path / "mnt"),
        str(target),
        str(writable),
    ]


@pytest.mark.skipif(not namespaces_available(), reason="needs mount namespaces (root)")
def test_a_failing_mount_exits_128_naming_it(tmp_path: Path) -> None:
    mounts = [
        {"source": str(tmp_path / "absent"), "target": str(tmp_path / "t"), "readOnly": False}
    ]
    spec = _spec(tmp_path, ["true"], namespaces=True, mounts=mounts)
    res = _run(launch_argv(spec))
    assert res.returncode == 128
    assert f"cannot bind-mount {tmp_path / 'absent'}" in res.stderr
