"""Fixtures of the operator's integration tests: a `lab` per test (its own namespace, NAAs,
Bitstream and operator processes), torn down afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from naaice_cluster.controlplane import Cluster
from tests.integration.operator.lab import Lab
from tests.support.naa import SoftwareNAAFactory


@pytest.fixture
def lab(
    embedded_cluster: Cluster, namespace: str, software_naa: SoftwareNAAFactory, tmp_path: Path
) -> Iterator[Lab]:
    the_lab = Lab(
        cluster=embedded_cluster, namespace=namespace, naa_factory=software_naa, workdir=tmp_path
    )
    try:
        yield the_lab
    finally:
        the_lab.close()
