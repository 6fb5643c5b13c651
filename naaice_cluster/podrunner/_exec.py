"""The last step before a container's command runs: inside the private mount (and UTS)
namespace that `unshare` creates for it, bind-mount the pod's volumes onto their mountPaths,
set the hostname to the pod's name, change to the working directory and exec the command.

That step is a short POSIX shell script (`/bin/sh`, run by `unshare` when namespaces are used),
not a Python helper: a Python interpreter per container cost ≈70 ms of CPU, which on a 2-core
machine was half the machine at 10 pods/s (bench/operator.py); `sh` + `mount` cost a few ms.

Mount points missing on the host are created here, in the pod runner, before the container
starts (a bind mount needs one), and recorded in the file `createdMountPoints`; the cluster's
teardown removes them when they are empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The launcher. Arguments: hostname, working directory, number of mounts, then per mount
#: source, target, read-only flag (1/0), then the container's argv. Exit codes as kubelet
#: reports them for containers that cannot start: 128 when preparing failed, 127 when the
#: command does not exist.
LAUNCHER = r"""
fail() { printf 'naaice pod runner: preparing the container failed: %s\n' "$1" >&2; exit 128; }
name=$1 workdir=$2 count=$3
shift 3
while [ "$count" -gt 0 ]; do
    src=$1 dst=$2 ro=$3
    shift 3
    count=$((count - 1))
    mount --bind "$src" "$dst" || fail "cannot bind-mount $src on $dst"
    if [ "$ro" = 1 ]; then
        mount -o remount,bind,ro "$dst" || fail "cannot make $dst read-only"
    fi
done
if [ -n "$name" ]; then
    printf '%s' "$name" > /proc/sys/kernel/hostname || fail "cannot set the hostname $name"
fi
cd "$workdir" || fail "cannot enter the working directory $workdir"
command -v "$1" > /dev/null 2>&1 || {
    printf "naaice pod runner: cannot run '%s': not found\n" "$1" >&2
    exit 127
}
exec "$@"
"""


def create_recorded(path: Path, *, is_dir: bool, record: Path) -> None:
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


def launch_argv(spec: dict[str, Any]) -> list[str]:
    """The command line that prepares a container as `spec` says and execs its argv.

    `spec` keys: namespaces (bool: run in a private mount + UTS namespace and do the mounts),
    mounts (source, target, readOnly), hostname, workingDir, argv, createdMountPoints (the
    record file). Missing mount points are created (and recorded) now, on the host."""
    mounts: list[str] = []
    hostname = ""
    if spec["namespaces"]:
        record = Path(spec["createdMountPoints"])
        for m in spec["mounts"]:
            create_recorded(Path(m["target"]), is_dir=Path(m["source"]).is_dir(), record=record)
            mounts += [m["source"], m["target"], "1" if m["readOnly"] else "0"]
        hostname = spec["hostname"]
    argv = [
        "/bin/sh",
        "-c",
        LAUNCHER,
        "naaice-launch",
        hostname,
        spec["workingDir"],
        str(len(mounts) // 3),
        *mounts,
        *spec["argv"],
    ]
    if spec["namespaces"]:
        argv = ["unshare", "--mount", "--uts", "--propagation", "private", "--", *argv]
    return argv
