"""The examples are consistent with each other and with the artifacts they point at: the
digests are the real sha256 of the shipped software bitstreams, the artifacts declare the same
functions as the Bitstream objects, and the NAAs follow the documented address scheme."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from naa_runtime.bitstream import parse_bitstream
from naaice.api import Bitstream, NAAJob, NetworkAttachedAccelerator
from naaice.spec import NaaSpecEntry, render_naa_spec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def objects(kind: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        found += [b for b in yaml.safe_load_all(path.read_text()) if b and b["kind"] == kind]
    return found


def artifact_of(bitstream: Bitstream) -> Path:
    return EXAMPLES / "bitstreams" / Path(urlparse(bitstream.spec.artifact.uri).path).name


def test_every_bitstream_digest_is_the_sha256_of_its_shipped_artifact() -> None:
    bitstreams = [Bitstream.from_body(b) for b in objects("Bitstream")]
    assert {b.metadata.name for b in bitstreams} == {"poet-surrogate", "test-kernels"}
    for bitstream in bitstreams:
        data = artifact_of(bitstream).read_bytes()
        assert bitstream.spec.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_artifacts_parse_as_software_bitstreams_with_the_same_functions() -> None:
    for body in objects("Bitstream"):
        bitstream = Bitstream.from_body(body)
        parsed = parse_bitstream(artifact_of(bitstream).read_bytes())
        assert parsed.name == bitstream.metadata.name
        assert {(f.name, f.fn_code) for f in parsed.functions} == {
            (f.name, f.fn_code) for f in bitstream.spec.functions
        }


def test_the_test_kernel_bitstream_binds_the_runtimes_test_kernels() -> None:
    from naa_runtime.kernels.registry import TEST_ADD_ONE, TEST_ADD_TWO, TEST_NOOP

    parsed = parse_bitstream((EXAMPLES / "bitstreams" / "test-kernels.yaml").read_bytes())
    assert parsed.kernels_by_fn == {1: TEST_ADD_ONE, 2: TEST_ADD_TWO, 3: TEST_NOOP}


def test_the_naas_follow_the_documented_loopback_scheme() -> None:
    naas = sorted(
        (NetworkAttachedAccelerator.from_body(b) for b in objects("NetworkAttachedAccelerator")),
        key=lambda n: n.metadata.name or "",
    )
    assert [n.metadata.name for n in naas] == ["naa-0", "naa-1", "naa-2", "naa-3"]
    for index, naa in enumerate(naas):
        assert naa.spec.address == f"127.0.0.{10 + index}"
        assert naa.spec.management.endpoint == f"http://127.0.0.{10 + index}:{9010 + index}"


def test_the_example_job_requests_a_function_its_bitstream_provides_on_a_board_that_exists() -> (
    None
):
    (job,) = [NAAJob.from_body(b) for b in objects("NAAJob")]
    bitstreams = {b["metadata"]["name"]: Bitstream.from_body(b) for b in objects("Bitstream")}
    boards = {b["spec"]["board"]["model"] for b in objects("NetworkAttachedAccelerator")}
    for request in job.spec.naas:
        assert request.bitstream is not None
        bitstream = bitstreams[request.bitstream]
        function = bitstream.spec.function(request.function)
        assert function is not None
        assert boards & set(bitstream.spec.compatible_boards)
        # The NAA Spec such a job gets is writable in the original format.
        naa = objects("NetworkAttachedAccelerator")[0]["spec"]
        entry = NaaSpecEntry(naa["address"], naa["cmPort"], function.fn_code, function.input_params)
        assert render_naa_spec([entry]) == "127.0.0.10:12345:16:3"
