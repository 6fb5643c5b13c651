"""Fixtures for the device plugin tests: a short plugin directory and the kubelet harness."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.device_plugin.kubelet_harness import KubeletHarness


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="naadp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kubelet(plugin_dir: Path) -> Iterator[KubeletHarness]:
    harness = KubeletHarness(plugin_dir)
    harness.start()
    yield harness
    harness.stop()
