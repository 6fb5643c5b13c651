"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.naa import SoftwareNAAFactory


@pytest.fixture
def software_naa(tmp_path: Path) -> Iterator[SoftwareNAAFactory]:
    """Factory: `software_naa(**options)` starts a real `naaice runtime serve` process on its
    own loopback address (127.0.0.10+), waits for /v1/health, and stops it afterwards."""
    factory = SoftwareNAAFactory(workdir=tmp_path)
    yield factory
    factory.close()
