"""The last step before a container's command runs: inside the private mount (and UTS)
namespace that `unshare` created for it, bind-mount the pod's volumes onto their mountPaths,
set the hostname to the pod's name, change to the working directory and exec the command.

Mount points missing on the host are created there (a bind mount needs one) and recorded in
the file `createdMountPoints`; the cluster's teardown removes them when they are empty.

Run by the pod runner as `unshare --mount --uts --propagation private -- python -I -m
naaice_cluster.podrunner._exec SPEC.json`; the environment is already the container's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _create_recorded(path: Path, *, is_dir: bool, record: Path) -> None:
    """Create a missing mount point (and missing parents) on the host filesystem, appending each
    path created to `record` so that cluster teardown can remove them again."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for i, item in enumerate(reversed(missing)):
        last = i == len(missing) - 1
        try:
            if last and not is_dir:
                item.touch(exist_ok=False)
            else:
                item.mkdir()
        except FileExistsError:  # another pod's container created it meanwhile
            continue
        with record.open("a") as fh:
            fh.write(f"{item}\n")


def _mount(source: str, target: str, *, read_only: bool, record: Path) -> None:
    src, dst = Path(source), Path(target)
    _create_recorded(dst, is_dir=src.is_dir(), record=record)
    subprocess.run(["mount", "--bind", source, target], check=True)
    if read_only:
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    try:
        if spec.get("namespaces"):
            for m in spec["mounts"]:
                _mount(
                    m["source"],
                    m["target"],
                    read_only=m["readOnly"],
                    record=Path(spec["createdMountPoints"]),
                )
            socket.sethostname(spec["hostname"])
        os.chdir(spec["workingDir"])
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"naaice pod runner: preparing the container failed: {exc}", file=sys.stderr)
        return 128
    command = spec["argv"]
    try:
        os.execvpe(command[0], command, dict(os.environ))
    except OSError as exc:
        print(f"naaice pod runner: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
