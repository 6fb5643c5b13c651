"""When receivers busy-poll (`endpoint.cpu_to_spare`): while the CPU pressure (Linux PSI)
of the last 10 s is low, with the load average as the fallback where PSI is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from naa_runtime.roce import endpoint
from naa_runtime.roce.endpoint import SPIN_CPU_PRESSURE, Endpoint, cpu_to_spare
from tests.support.roce import next_loopback


def _pressure(tmp_path: Path, avg10: float) -> str:
    p = tmp_path / "cpu"
    p.write_text(
        f"some avg10={avg10:.2f} avg60=40.00 avg300=40.00 total=123456\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    return str(p)


@pytest.mark.parametrize(
    ("avg10", "spare"), [(0.0, True), (SPIN_CPU_PRESSURE - 0.01, True), (SPIN_CPU_PRESSURE, False)]
)
def test_cpu_pressure_decides_whatever_the_load_average(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, avg10: float, spare: bool
) -> None:
    # a load average that would say the opposite: PSI is what counts
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0 if not spare else 99.0, 0.0, 0.0))
    assert cpu_to_spare(_pressure(tmp_path, avg10)) is spare


@pytest.mark.parametrize("content", [None, "", "garbage\n", "some avg10=x\n"])
@pytest.mark.parametrize(("load", "spare"), [(0.5, True), (64.0, False)])
def test_without_readable_pressure_the_load_average_decides(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str | None,
    load: float,
    spare: bool,
) -> None:
    path = tmp_path / "cpu"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cpu_to_spare(str(path)) is spare


def test_the_endpoint_spins_by_the_policy_and_looks_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = Endpoint(address=next_loopback())
    try:
        busy = _pressure(tmp_path, 50.0)
        idle = str(tmp_path / "idle")
        Path(idle).write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        monkeypatch.setattr(endpoint, "CPU_PRESSURE", idle)
        assert ep._spin(100.0) == ep.config.busy_poll
        monkeypatch.setattr(endpoint, "CPU_PRESSURE", busy)
        assert ep._spin(100.5) == ep.config.busy_poll  # within the second: not looked at
        assert ep._spin(101.0) == 0.0
    finally:
        ep.stop()


def test_cpu_pressure_reads_some_avg10_or_none(tmp_path: Path) -> None:
    assert endpoint.cpu_pressure(_pressure(tmp_path, 12.5)) == 12.5
    bad = tmp_path / "bad"
    bad.write_text("full avg10=3.00 avg60=0.00 avg300=0.00 total=0\n")
    assert endpoint.cpu_pressure(str(bad)) is None
    assert endpoint.cpu_pressure(str(tmp_path / "missing")) is None
