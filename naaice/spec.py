"""The NAA Spec: which NAAs a job's host program may use, in the original `NAA_SPEC` format and
in naaice's JSON form (docs/reference/naa-spec.md).

The operator renders both from an NAAJob's status (`spec_from_job`) and injects them into the
job's pods; the host client (`naa_runtime.client`) parses `NAA_SPEC` exactly as the NAAICE
communication library does and binds entries with `NaaSpecBinder`, as `naa_create` does."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from naaice.api import NAAJob

NAA_SPEC_ENV: Final = "NAA_SPEC"
"""The original env var: `<address>:<port>:<fn_code>:<param_count>[,…]`."""
NAA_SPEC_JSON_ENV: Final = "NAAICE_NAA_SPEC_JSON"
"""naaice's env var holding the JSON form."""
NAA_SPEC_FILE: Final = "/etc/naaice/naa-spec.json"
"""Where the JSON form is mounted in a job's pods."""
DEFAULT_PORT: Final = 12345
"""Port used for an empty port field (the library's `SERVER_CONNECTION_PORT`)."""
MAX_FN_CODE: Final = 127
MAX_PARAM_COUNT: Final = 32

_FIELDS_PER_CHUNK = 4
_C_SPACE = " \t\n\v\f\r"
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


class NaaSpecError(ValueError):
    """Base of the NAA Spec errors; the message says what was wrong and what to do."""


class NoNaaForFunctionError(NaaSpecError):
    """`naa_create` found no unbound entry with the requested fn code."""


class ParamCountMismatchError(NaaSpecError):
    """The entry's param_count differs from the number of inputs the program passes."""


@dataclass(frozen=True, slots=True)
class NaaSpecEntry:
    """One `<address>:<port>:<fn_code>:<param_count>` entry."""

    address: str
    port: int
    fn_code: int
    param_count: int

    def render(self) -> str:
        """The entry in the original format; raises `NaaSpecError` for an entry the original
        library would misread."""
        problems = entry_problems(self)
        if problems:
            raise NaaSpecError(f"cannot write NAA_SPEC entry {self}: {'; '.join(problems)}")
        return f"{self.address}:{self.port}:{self.fn_code}:{self.param_count}"


def entry_problems(entry: NaaSpecEntry) -> list[str]:
    """Why `entry` cannot be written faithfully (empty when it can)."""
    problems = []
    if not entry.address:
        problems.append("the address is empty; give the NAA an address")
    elif ":" in entry.address:
        problems.append(
            f"address {entry.address!r} contains ':', the format's field separator (an IPv6 "
            "address cannot be written); give the NAA an IPv4 address or a hostname"
        )
    elif any(ch == "," or ch in _C_SPACE or not ch.isprintable() for ch in entry.address):
        problems.append(
            f"address {entry.address!r} contains ',', white space or control characters"
        )
    if not 1 <= entry.port <= 65535:
        problems.append(f"port {entry.port} is not in 1..65535")
    if not 1 <= entry.fn_code <= MAX_FN_CODE:
        problems.append(f"fn_code {entry.fn_code} is not in 1..{MAX_FN_CODE}")
    if not 0 <= entry.param_count <= MAX_PARAM_COUNT:
        problems.append(f"param_count {entry.param_count} is not in 0..{MAX_PARAM_COUNT}")
    return problems


def _strtol(token: str) -> int:
    """C `strtol(token, NULL, 10)`: leading white space, an optional sign, then the longest
    run of decimal digits; 0 when there are none; clamped to the range of a 64-bit long."""
    i = 0
    while i < len(token) and token[i] in _C_SPACE:
        i += 1
    sign = 1
    if i < len(token) and token[i] in "+-":
        sign = -1 if token[i] == "-" else 1
        i += 1
    j = i
    while j < len(token) and token[j] in "0123456789":
        j += 1
    if j == i:
        return 0
    return max(_LONG_MIN, min(_LONG_MAX, sign * int(token[i:j])))


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdecimal()


def _parse_chunk(chunk: str) -> NaaSpecEntry | None:
    fields = chunk.split(":")
    if len(fields) != _FIELDS_PER_CHUNK:
        return None
    address, port, fn_code, param_count = fields
    return NaaSpecEntry(
        address=address,
        # The library stores the port as uint16_t and the counts as 32-bit unsigned ints.
        port=(_strtol(port) % 2**16) if port else DEFAULT_PORT,
        fn_code=_strtol(fn_code) % 2**32,
        param_count=_strtol(param_count) % 2**32,
    )


def parse_naa_spec(text: str, *, strict: bool = False) -> tuple[NaaSpecEntry, ...]:
    """Parse an `NAA_SPEC` value.

    By default exactly as the NAAICE communication library does: chunks separated by `,`;
    a chunk without exactly four `:`-separated fields is dropped silently; an empty port is
    12345; numbers are read like C's `strtol` (so `x` is 0) and wrap like the C types they
    are stored in. With `strict=True`, anything the library would drop or misread raises
    `NaaSpecError` instead, naming each offending chunk."""
    entries = []
    problems = []
    for index, chunk in enumerate(text.split(",")):
        entry = _parse_chunk(chunk)
        if entry is None:
            if strict:
                count = len(chunk.split(":"))
                problems.append(
                    f"chunk {index} {chunk!r} has {count} field(s), not 4 "
                    "(<address>:<port>:<fn_code>:<param_count>)"
                )
            continue
        if strict:
            _, port, fn_code, param_count = chunk.split(":")
            bad = [n for n in (fn_code, param_count) if not _is_decimal(n)]
            if port and not _is_decimal(port):
                bad.insert(0, port)
            if bad:
                problems.append(f"chunk {index} {chunk!r}: {bad[0]!r} is not a decimal number")
            else:
                problems.extend(f"chunk {index} {chunk!r}: {p}" for p in entry_problems(entry))
        entries.append(entry)
    if problems:
        raise NaaSpecError(f"invalid NAA_SPEC: {'; '.join(problems)}")
    return tuple(entries)


def render_naa_spec(entries: Iterable[NaaSpecEntry]) -> str:
    """The `NAA_SPEC` value for `entries`, in order. Every port is written out, so the value
    does not depend on the library's default. Raises `NaaSpecError` for an entry the library
    would misread (see `entry_problems`)."""
    return ",".join(entry.render() for entry in entries)


def first_unbound(
    entries: Sequence[NaaSpecEntry], *, fn_code: int, bound: Collection[int]
) -> int | None:
    """Index of the first entry with `fn_code` whose index is not in `bound`, or None: the
    library's rule for choosing an NAA in `naa_create`."""
    for index, entry in enumerate(entries):
        if entry.fn_code == fn_code and index not in bound:
            return index
    return None


@dataclass
class NaaSpecBinder:
    """The entries of one process and which of them are bound to a handle, as `naa_create`
    and `naa_finalize` use them. Not thread-safe; one per process, like the library's."""

    entries: tuple[NaaSpecEntry, ...]
    bound: set[int] = field(default_factory=set)

    @classmethod
    def from_env_value(cls, value: str | None) -> NaaSpecBinder:
        if value is None:
            raise NaaSpecError(
                f"{NAA_SPEC_ENV} is not set, so no NAA can be used; run the program in an "
                f"NAAJob's pod or set {NAA_SPEC_ENV}=<address>:<port>:<fn_code>:<param_count>"
            )
        return cls(entries=parse_naa_spec(value))

    def bind(self, *, fn_code: int, param_count: int) -> tuple[int, NaaSpecEntry]:
        """Choose and bind the entry for a `naa_create(fn_code, …, param_count inputs)`.

        Like the library, the first unbound entry with the fn code is chosen; if its
        param_count differs, the call fails and the entry stays unbound."""
        index = first_unbound(self.entries, fn_code=fn_code, bound=self.bound)
        if index is None:
            have = sorted({e.fn_code for e in self.entries})
            raise NoNaaForFunctionError(
                f"no unbound NAA for fn code {fn_code} in {NAA_SPEC_ENV} (fn codes present: "
                f"{have or 'none'}, {len(self.bound)} entries bound); request more NAAs with "
                "that function in the NAAJob or finalize a handle first"
            )
        entry = self.entries[index]
        if entry.param_count != param_count:
            raise ParamCountMismatchError(
                f"the NAA at {entry.address} (fn code {fn_code}) takes {entry.param_count} "
                f"input(s), the program passes {param_count}; pass as many inputs as the "
                "Bitstream's inputParams"
            )
        self.bound.add(index)
        return index, entry

    def release(self, index: int) -> None:
        """Unbind entry `index` (after `naa_finalize`)."""
        self.bound.discard(index)


# -- the JSON form ------------------------------------------------------------------------------


class _JsonModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )


class NaaSpecJsonEntry(_JsonModel):
    """One NAA bound to one request of the job, with everything the original entry has plus
    the names behind it."""

    naa: str = Field(min_length=1, max_length=63)
    request: str = Field(min_length=1, max_length=63)
    function: str = Field(min_length=1, max_length=63)
    address: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    fn_code: int = Field(ge=1, le=MAX_FN_CODE)
    param_count: int = Field(ge=0, le=MAX_PARAM_COUNT)
    bitstream: str = Field(min_length=1, max_length=253)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")

    def original(self) -> NaaSpecEntry:
        return NaaSpecEntry(
            address=self.address,
            port=self.port,
            fn_code=self.fn_code,
            param_count=self.param_count,
        )


class NaaSpecJobRef(_JsonModel):
    namespace: str
    name: str
    uid: str | None = None


class NaaSpecDocument(_JsonModel):
    """The JSON form (env `NAAICE_NAA_SPEC_JSON`, file `/etc/naaice/naa-spec.json`). Its
    entries are in the same order as the original `NAA_SPEC`, so index i means the same NAA
    in both."""

    api_version: Literal["naaice.io/v1alpha1"] = "naaice.io/v1alpha1"
    kind: Literal["NAASpec"] = "NAASpec"
    naajob: NaaSpecJobRef | None = None
    entries: tuple[NaaSpecJsonEntry, ...] = ()

    def original(self) -> tuple[NaaSpecEntry, ...]:
        return tuple(entry.original() for entry in self.entries)

    def render_original(self) -> str:
        """The `NAA_SPEC` value with the same entries in the same order."""
        return render_naa_spec(self.original())

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> NaaSpecDocument:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            listed = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<document>'}: {err['msg']}"
                for err in exc.errors()
            )
            raise NaaSpecError(
                f"invalid {NAA_SPEC_JSON_ENV} document: {listed}; it is written by the "
                "operator, see docs/reference/naa-spec.md"
            ) from None


def spec_from_job(job: NAAJob) -> NaaSpecDocument:
    """The NAA Spec of `job` from its `status.assignedNAAs`, in their order (which the
    operator keeps in the order of `spec.naas`, then of the NAAs bound to each request)."""
    assigned = (job.status.assigned_naas if job.status else None) or []
    entries = []
    for item in assigned:
        request = job.spec.request(item.request)
        if request is None:
            raise NaaSpecError(
                f"status.assignedNAAs names request {item.request!r}, which spec.naas of "
                f"NAAJob {job.metadata.name!r} does not have; the status is stale"
            )
        entries.append(
            NaaSpecJsonEntry(
                naa=item.naa,
                request=item.request,
                function=request.function,
                address=item.address,
                port=item.port,
                fn_code=item.fn_code,
                param_count=item.param_count,
                bitstream=item.bitstream,
                digest=item.digest,
            )
        )
    ref = None
    if job.metadata.namespace and job.metadata.name:
        ref = NaaSpecJobRef(
            namespace=job.metadata.namespace, name=job.metadata.name, uid=job.metadata.uid
        )
    return NaaSpecDocument(naajob=ref, entries=tuple(entries))
