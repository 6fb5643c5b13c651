"""Process helpers shared by the control plane and the pod runner: free ports, starting a
logged process in its own session, and stopping process groups (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def free_ports(count: int, *, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports that are free on `host` right now.

    All sockets stay bound until every port is picked, so the ports are distinct; another
    process may still take one before we use it, which start-up then reports as an error."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def spawn(
    args: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `args` in a new session (its own process group) with stdout+stderr into `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_groups(pids: Iterable[int], *, grace: float = 10.0) -> list[int]:
    """SIGTERM each process group (leader pid), wait up to `grace` s, SIGKILL what is left.

    The groups are signalled in the given order, each waited for before the next, so callers
    pass them in reverse start order. Returns the pids that needed SIGKILL."""
    killed: list[int] = []
    for pid in pids:
        if not alive(pid):
            _reap(pid)
            continue
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid):
                break
            time.sleep(0.05)
        else:
            killed.append(pid)
        # Also catch children left in the group after the leader exited.
        _signal_group(pid, signal.SIGKILL)
        _reap(pid)
    return killed
