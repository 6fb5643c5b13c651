"""Software bitstream artifacts: digest checks, parsing, fetching."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from naa_runtime.bitstream import (
    ArtifactUnavailableError,
    DigestMismatchError,
    InvalidBitstreamError,
    InvalidDigestError,
    digest_of,
    fetch_artifact,
    parse_bitstream,
    verify_digest,
)

GOOD = b"""\
apiVersion: naaice.io/v1alpha1
kind: SoftwareBitstream
name: test-kernels
functions:
  - {name: add1, fnCode: 1, kernel: test.add1}
  - {name: busy, fnCode: 20, kernel: test.busy}
"""


def test_a_valid_document_maps_fn_codes_to_kernel_names() -> None:
    bitstream = parse_bitstream(GOOD)
    assert bitstream.name == "test-kernels"
    assert bitstream.kernels_by_fn == {1: "test.add1", 20: "test.busy"}


def test_json_documents_are_accepted() -> None:
    doc = (
        b'{"kind": "SoftwareBitstream",'
        b' "functions": [{"name": "n", "fnCode": 3, "kernel": "test.noop"}]}'
    )
    assert parse_bitstream(doc).kernels_by_fn == {3: "test.noop"}


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        (b"kind: Bitstream\nfunctions: [{name: a, fnCode: 1, kernel: k}]", "kind"),
        (b"kind: SoftwareBitstream\nfunctions: []", "functions"),
        (b"kind: SoftwareBitstream\nfunctions: [{name: a, fnCode: 0, kernel: k}]", "fnCode"),
        (b"kind: SoftwareBitstream\nfunctions: [{name: a, fnCode: 128, kernel: k}]", "fnCode"),
        (b"kind: SoftwareBitstream\nfunctions: [{name: a, fnCode: 1}]", "kernel"),
        (b"kind: SoftwareBitstream\nfunctions: [{name: a, fnCode: 1, kernel: k, x: 1}]", "x"),
        (
            b"kind: SoftwareBitstream\nfunctions: [{name: a, fnCode: 1, kernel: k},"
            b" {name: b, fnCode: 1, kernel: k}]",
            "fnCode 1",
        ),
        (b"- just a list", "mapping"),
        (b"\xff\xfe binary", "UTF-8"),
        (b"key: [unclosed", "YAML"),
    ],
)
def test_invalid_documents_are_refused_with_the_reason(document: bytes, complaint: str) -> None:
    with pytest.raises(InvalidBitstreamError, match=complaint):
        parse_bitstream(document)


def test_the_digest_is_the_sha256_of_the_artifact_bytes() -> None:
    assert digest_of(GOOD) == "sha256:" + hashlib.sha256(GOOD).hexdigest()
    verify_digest(data=GOOD, expected=digest_of(GOOD))


def test_a_changed_artifact_fails_verification_naming_both_digests() -> None:
    expected = digest_of(GOOD)
    with pytest.raises(DigestMismatchError) as info:
        verify_digest(data=GOOD + b"\n", expected=expected)
    assert expected in str(info.value)
    assert digest_of(GOOD + b"\n") in str(info.value)


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 64, "sha256:" + "A" * 64])
def test_malformed_digests_are_refused(digest: str) -> None:
    with pytest.raises(InvalidDigestError):
        verify_digest(data=GOOD, expected=digest)


async def test_file_artifacts_are_read(tmp_path: Path) -> None:
    path = tmp_path / "bs.yaml"
    path.write_bytes(GOOD)
    assert await fetch_artifact(path.as_uri()) == GOOD


async def test_a_missing_file_artifact_says_which_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactUnavailableError, match=r"missing\.yaml"):
        await fetch_artifact((tmp_path / "missing.yaml").as_uri())


async def test_oversized_artifacts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * 100)
    with pytest.raises(ArtifactUnavailableError, match="larger"):
        await fetch_artifact(path.as_uri(), max_bytes=10)


async def test_unsupported_schemes_are_refused() -> None:
    with pytest.raises(ArtifactUnavailableError, match="scheme"):
        await fetch_artifact("ftp://example.org/bs.yaml")
