"""The last step before a container's command runs: inside the private mount (and UTS)
namespace that `unshare` created for it, bind-mount the pod's volumes onto their mountPaths,
set the hostname to the pod's name, change to the working directory and exec the command.

Run by the pod runner as `unshare --mount --uts --propagation private -- python -I -m
naaice_cluster.podrunner._exec SPEC.json`; the environment is already the container's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _mount(source: str, target: str, *, read_only: bool) -> None:
    src, dst = Path(source), Path(target)
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.touch()
    subprocess.run(["mount", "--bind", source, target], check=True)
    if read_only:
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    try:
        if spec.get("namespaces"):
            for m in spec["mounts"]:
                _mount(m["source"], m["target"], read_only=m["readOnly"])
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
