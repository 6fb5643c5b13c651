"""`naaice agent run` as a user starts it: flags with env twins, /metrics served, clean exit on
SIGTERM, and a clear refusal of a bad flag."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

NAAICE = str(Path(sys.executable).with_name("naaice"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agent_run_serves_metrics_and_stops_on_sigterm(cluster: Any, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "NAAICE_NODE_NAME": "cli-node",
        "NAAICE_METRICS_PORT": str(port),
        "NAAICE_KUBECONFIG": str(cluster.kubeconfig),
    }
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen(
        [
            NAAICE,
            "agent",
            "run",
            "--metrics-address",
            "127.0.0.1",
            "--kubelet-dir",
            str(tmp_path / "dp"),
            "--sample-hz",
            "20",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "agent.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
                time.sleep(0.2)
        assert 'naa_exporter_build_info{version="0.1.0"} 1.0' in text
        sock = tmp_path / "dp" / "naaice-naa.sock"
        while not sock.is_socket():
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_agent_run_refuses_a_bad_node_name_and_says_what_to_pass() -> None:
    res = subprocess.run(
        [NAAICE, "agent", "run", "--node-name", "Not_A_Node"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 2
    assert "is not a Kubernetes node name" in res.stderr
