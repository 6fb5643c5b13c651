"""The NAA Spec: the original `NAA_SPEC` format read exactly as the NAAICE library reads it,
written so the library reads back what we meant, the `naa_create` binding rule, and the JSON
form. Property-style: hand-written seeded generators, hundreds of cases each."""

from __future__ import annotations

import random
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from naaice.api import NAAJob
from naaice.spec import (
    DEFAULT_PORT,
    NaaSpecBinder,
    NaaSpecDocument,
    NaaSpecEntry,
    NaaSpecError,
    NoNaaForFunctionError,
    ParamCountMismatchError,
    first_unbound,
    parse_naa_spec,
    render_naa_spec,
    spec_from_job,
)

CASES = 500


def random_address(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return ".".join(str(rng.randrange(256)) for _ in range(4))
    labels = [
        "".join(
            rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(1, 12))
        )
        for _ in range(rng.randint(1, 4))
    ]
    return ".".join(labels)


def random_entry(rng: random.Random) -> NaaSpecEntry:
    return NaaSpecEntry(
        address=random_address(rng),
        port=rng.randint(1, 65535),
        fn_code=rng.randint(1, 127),
        param_count=rng.randint(0, 32),
    )


def random_junk(rng: random.Random, *, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))


def test_rendered_entries_parse_back_identically() -> None:
    rng = random.Random(1)
    for _ in range(CASES):
        entries = tuple(random_entry(rng) for _ in range(rng.randint(1, 8)))
        text = render_naa_spec(entries)
        assert parse_naa_spec(text) == entries
        assert parse_naa_spec(text, strict=True) == entries


def test_chunks_without_exactly_four_fields_are_dropped_and_the_rest_kept_in_order() -> None:
    rng = random.Random(2)
    alphabet = string.ascii_letters + string.digits + " .-"
    for _ in range(CASES):
        chunks, expected = [], []
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.5:
                entry = random_entry(rng)
                chunks.append(entry.render())
                expected.append(entry)
            else:
                fields = rng.choice([1, 2, 3, 5, 6, 7])
                chunks.append(":".join(random_junk(rng, alphabet=alphabet) for _ in range(fields)))
        assert parse_naa_spec(",".join(chunks)) == tuple(expected)


def test_an_empty_port_means_12345() -> None:
    assert parse_naa_spec("10.3.10.42::3:1") == (NaaSpecEntry("10.3.10.42", DEFAULT_PORT, 3, 1),)
    assert DEFAULT_PORT == 12345


def test_the_ci_example_of_the_original_library_parses() -> None:
    assert parse_naa_spec("10.3.10.42:12345:3:1") == (NaaSpecEntry("10.3.10.42", 12345, 3, 1),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        (",,,", ()),
        ("a:1:2", ()),
        ("a:1:2:3:4", ()),
        ("a:x:y:z", (NaaSpecEntry("a", 0, 0, 0),)),
        ("a: 7:+3:12abc", (NaaSpecEntry("a", 7, 3, 12),)),
        ("a:70000:1:1", (NaaSpecEntry("a", 70000 - 65536, 1, 1),)),
        ("a:-1:-1:1", (NaaSpecEntry("a", 65535, 2**32 - 1, 1),)),
        (":1:1:1", (NaaSpecEntry("", 1, 1, 1),)),
        ("h:0x10:1:1", (NaaSpecEntry("h", 0, 1, 1),)),
    ],
)
def test_odd_values_are_read_as_the_c_library_reads_them(
    text: str, expected: tuple[NaaSpecEntry, ...]
) -> None:
    assert parse_naa_spec(text) == expected


def test_random_text_never_makes_the_faithful_parser_raise() -> None:
    rng = random.Random(3)
    alphabet = string.printable + "äß€"
    for _ in range(CASES):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for entry in parse_naa_spec(text):
            assert 0 <= entry.port < 2**16
            assert 0 <= entry.fn_code < 2**32


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("a:1:2", "chunk 0 'a:1:2' has 3 field(s)"),
        ("10.0.0.1:12345:3:1,,", "chunk 1 '' has 1 field(s)"),
        ("a:x:3:1", "'x' is not a decimal number"),
        ("a:1:3:one", "'one' is not a decimal number"),
        ("a:1:200:1", "fn_code 200 is not in 1..127"),
        ("a:0:3:1", "port 0 is not in 1..65535"),
        (":1:3:1", "the address is empty"),
    ],
)
def test_strict_parsing_names_what_the_library_would_drop_or_misread(text: str, named: str) -> None:
    with pytest.raises(NaaSpecError) as caught:
        parse_naa_spec(text, strict=True)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (NaaSpecEntry("fd00::1", 12345, 1, 1), "IPv6"),
        (NaaSpecEntry("", 12345, 1, 1), "address is empty"),
        (NaaSpecEntry("a,b", 12345, 1, 1), "','"),
        (NaaSpecEntry("a b", 12345, 1, 1), "white space"),
        (NaaSpecEntry("a", 0, 1, 1), "port 0"),
        (NaaSpecEntry("a", 1, 0, 1), "fn_code 0"),
        (NaaSpecEntry("a", 1, 128, 1), "fn_code 128"),
        (NaaSpecEntry("a", 1, 1, 33), "param_count 33"),
    ],
)
def test_entries_the_library_would_misread_are_not_written(
    entry: NaaSpecEntry, problem: str
) -> None:
    with pytest.raises(NaaSpecError, match="cannot write NAA_SPEC entry") as caught:
        render_naa_spec([entry])
    assert problem in str(caught.value)


def test_first_unbound_picks_the_first_matching_entry_not_yet_bound() -> None:
    rng = random.Random(4)
    for _ in range(CASES):
        entries = [NaaSpecEntry("a", 1, rng.randint(1, 4), 1) for _ in range(rng.randint(0, 10))]
        bound = {i for i in range(len(entries)) if rng.random() < 0.4}
        fn_code = rng.randint(1, 4)
        expected = next(
            (i for i, e in enumerate(entries) if e.fn_code == fn_code and i not in bound), None
        )
        assert first_unbound(entries, fn_code=fn_code, bound=bound) == expected


def test_the_binder_hands_out_each_entry_once_until_it_is_released() -> None:
    binder = NaaSpecBinder.from_env_value("10.0.0.1:12345:16:3,10.0.0.2:12345:16:3,10.0.0.3::1:1")
    first, entry = binder.bind(fn_code=16, param_count=3)
    assert (first, entry.address) == (0, "10.0.0.1")
    second, entry = binder.bind(fn_code=16, param_count=3)
    assert (second, entry.address) == (1, "10.0.0.2")
    with pytest.raises(NoNaaForFunctionError, match=r"fn code 16 .*fn codes present: \[1, 16\]"):
        binder.bind(fn_code=16, param_count=3)
    binder.release(first)
    assert binder.bind(fn_code=16, param_count=3)[0] == 0


def test_a_param_count_mismatch_fails_and_leaves_the_entry_unbound() -> None:
    binder = NaaSpecBinder.from_env_value("10.0.0.1:12345:16:3")
    with pytest.raises(ParamCountMismatchError, match="takes 3 input"):
        binder.bind(fn_code=16, param_count=2)
    assert binder.bound == set()
    assert binder.bind(fn_code=16, param_count=3)[0] == 0


def test_a_missing_naa_spec_says_how_to_get_one() -> None:
    with pytest.raises(NaaSpecError, match="NAAJob"):
        NaaSpecBinder.from_env_value(None)


def job_with_assignments() -> NAAJob:
    digest = "sha256:" + "1" * 64
    return NAAJob.from_body(
        {
            "apiVersion": "naaice.io/v1alpha1",
            "kind": "NAAJob",
            "metadata": {"name": "poet", "namespace": "team-a", "uid": "u-1"},
            "spec": {
                "naas": [
                    {"name": "trainer", "function": "poet-train", "count": 2},
                    {"name": "probe", "function": "noop"},
                ],
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
            },
            "status": {
                "assignedNAAs": [
                    {
                        "request": "trainer",
                        "naa": "naa-0",
                        "address": "127.0.0.10",
                        "port": 12345,
                        "fnCode": 16,
                        "paramCount": 3,
                        "bitstream": "poet-surrogate",
                        "digest": digest,
                    },
                    {
                        "request": "trainer",
                        "naa": "naa-2",
                        "address": "127.0.0.12",
                        "port": 12345,
                        "fnCode": 16,
                        "paramCount": 3,
                        "bitstream": "poet-surrogate",
                        "digest": digest,
                    },
                    {
                        "request": "probe",
                        "naa": "naa-3",
                        "address": "naa-3.example",
                        "port": 23456,
                        "fnCode": 3,
                        "paramCount": 1,
                        "bitstream": "test-kernels",
                        "digest": digest,
                    },
                ]
            },
        }
    )


def test_the_spec_of_a_job_lists_its_assigned_naas_in_order_in_both_forms() -> None:
    document = spec_from_job(job_with_assignments())
    assert [(e.naa, e.function) for e in document.entries] == [
        ("naa-0", "poet-train"),
        ("naa-2", "poet-train"),
        ("naa-3", "noop"),
    ]
    assert document.render_original() == (
        "127.0.0.10:12345:16:3,127.0.0.12:12345:16:3,naa-3.example:23456:3:1"
    )
    assert parse_naa_spec(document.render_original()) == document.original()
    assert document.naajob is not None
    assert (document.naajob.namespace, document.naajob.name) == ("team-a", "poet")


def test_the_json_form_round_trips_with_camel_case_keys() -> None:
    document = spec_from_job(job_with_assignments())
    text = document.to_json()
    assert '"fnCode":16' in text
    assert '"kind":"NAASpec"' in text
    assert NaaSpecDocument.from_json(text) == document


def test_a_broken_json_form_is_refused_naming_the_field() -> None:
    text = spec_from_job(job_with_assignments()).to_json().replace('"fnCode":16', '"fnCode":300', 1)
    with pytest.raises(NaaSpecError, match=r"entries\.0\.fnCode"):
        NaaSpecDocument.from_json(text)


def test_a_stale_status_naming_an_unknown_request_is_refused() -> None:
    job = job_with_assignments()
    assert job.status is not None
    assert job.status.assigned_naas is not None
    job.status.assigned_naas[0].request = "gone"
    with pytest.raises(NaaSpecError, match="'gone'"):
        spec_from_job(job)


ORACLE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    long v = strtol(line, NULL, 10);
    printf("%u %u\n", (unsigned)(uint16_t)v, (unsigned)(uint32_t)v);
  }
  return 0;
}
"""


def test_numbers_are_read_like_libc_strtol_and_the_c_casts(tmp_path: Path) -> None:
    """An oracle compiled from a few lines of C: libc's own strtol and the casts the library
    stores the fields with."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the strtol oracle")
    source = tmp_path / "oracle.c"
    source.write_text(ORACLE)
    binary = tmp_path / "oracle"
    subprocess.run([compiler, "-O0", "-o", str(binary), str(source)], check=True)
    rng = random.Random(5)
    alphabet = "0123456789" * 3 + " \t+-xa."
    tokens = ["", " ", "-", "+", "99999999999999999999999", "-99999999999999999999999"]
    tokens += [random_junk(rng, alphabet=alphabet) for _ in range(CASES)]
    tokens = [t for t in tokens if t]  # an empty port field is the library's special case
    out = subprocess.run(
        [str(binary)], input="\n".join(tokens) + "\n", capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for token, line in zip(tokens, out, strict=False):
        port, fn_code = (int(x) for x in line.split())
        (entry,) = parse_naa_spec(f"h:{token}:{token}:1")
        assert (entry.port, entry.fn_code) == (port, fn_code), repr(token)
