"""The quarantined generated code is exactly what hack/gen-deviceplugin.sh produces from the
vendored proto, and the proto still names its upstream tag."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_regenerating_the_device_plugin_bindings_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "hack" / "gen-deviceplugin.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    committed = ROOT / "device_plugin" / "_generated"
    for name in ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py", "__init__.py"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name


def test_the_vendored_proto_is_the_upstream_file_below_its_header() -> None:
    text = (ROOT / "device_plugin" / "proto" / "api.proto").read_text()
    header, _, upstream = text.partition("// ---- upstream file follows ----\n")
    assert "k8s.io/kubelet, tag v0.35.4" in header
    digest = hashlib.sha256(upstream.encode()).hexdigest()
    assert digest in header
