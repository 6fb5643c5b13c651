"""The exclusivity check the integration tests rely on must itself catch an overlap."""

from __future__ import annotations

from pathlib import Path

from tests.integration.operator.lab import overlapping_holders


def write(path: Path, spec: str, beats: list[float]) -> None:
    path.write_text(spec + "\n" + "\n".join(repr(b) for b in beats) + "\n")


def test_overlapping_pods_on_one_naa_are_reported_and_sequential_ones_are_not(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a", "127.0.0.10:12345:1:1", [1.0, 1.5, 2.0])
    write(tmp_path / "b", "127.0.0.10:12345:1:1,127.0.0.11:12345:1:1", [2.1, 2.5])
    assert overlapping_holders(tmp_path) == []
    write(tmp_path / "c", "127.0.0.11:12345:1:1", [2.4, 3.0])
    (problem,) = overlapping_holders(tmp_path)
    assert problem.startswith("127.0.0.11: b")
