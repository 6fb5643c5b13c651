"""Software bitstream artifacts: fetch, verify the sha256 digest, parse, and name the kernels.

A software NAA's "bitstream" is a small YAML/JSON document (docs/design/contracts.md):

    apiVersion: naaice.io/v1alpha1      # optional
    kind: SoftwareBitstream
    name: poet-surrogate                # optional
    functions:
      - {name: add1, fnCode: 1, kernel: test.add1}

Its digest is `sha256:` + the hex sha256 of the artifact's bytes. `naa_runtime.naa` calls
`fetch_artifact`, `verify_digest` and `parse_bitstream` when the management plane asks it to
flash; binding the kernel names to kernels is the registry's job.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

KIND = "SoftwareBitstream"
MAX_ARTIFACT_BYTES = 4 * 1024 * 1024
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class BitstreamError(Exception):
    """Base of the errors flashing a software bitstream can raise. `code` is the management
    plane's error code."""

    code = "bitstream-error"


class InvalidDigestError(BitstreamError):
    code = "invalid-digest"


class ArtifactUnavailableError(BitstreamError):
    code = "artifact-unavailable"


class DigestMismatchError(BitstreamError):
    code = "digest-mismatch"


class InvalidBitstreamError(BitstreamError):
    code = "invalid-bitstream"


def check_digest(digest: str) -> str:
    """Return `digest` if it is `sha256:` + 64 lower-case hex digits."""
    if not _DIGEST.match(digest):
        raise InvalidDigestError(
            f"digest {digest!r} is not 'sha256:' followed by 64 lower-case hex digits; "
            "compute it with `sha256sum <artifact>`"
        )
    return digest


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_digest(*, data: bytes, expected: str) -> None:
    actual = digest_of(data)
    if actual != check_digest(expected):
        raise DigestMismatchError(
            f"the artifact's digest is {actual}, the request asked for {expected}; the "
            "artifact changed or the Bitstream's spec.digest is wrong — fix the digest or "
            "republish the artifact"
        )


class _Function(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=63)
    fn_code: int = Field(alias="fnCode", ge=1, le=127)
    kernel: str = Field(min_length=1, max_length=63)


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: str | None = Field(default=None, alias="apiVersion")
    kind: str
    name: str | None = None
    description: str | None = None
    functions: list[_Function] = Field(min_length=1)

    @field_validator("kind")
    @classmethod
    def _kind_is_software_bitstream(cls, kind: str) -> str:
        if kind != KIND:
            raise ValueError(f"kind must be {KIND!r}")
        return kind


@dataclass(frozen=True)
class BitstreamFunction:
    name: str
    fn_code: int
    kernel: str


@dataclass(frozen=True)
class SoftwareBitstream:
    """A parsed software bitstream: which kernel each fn code runs."""

    name: str | None
    functions: tuple[BitstreamFunction, ...]

    @property
    def kernels_by_fn(self) -> dict[int, str]:
        return {f.fn_code: f.kernel for f in self.functions}


def parse_bitstream(data: bytes) -> SoftwareBitstream:
    """Parse and validate a software bitstream document (YAML or JSON)."""
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidBitstreamError(
            f"the artifact is not a UTF-8 YAML/JSON document ({exc}); a software NAA can only "
            f"load a '{KIND}' document"
        ) from exc
    if not isinstance(raw, dict):
        raise InvalidBitstreamError(
            f"the artifact is not a mapping; a software NAA can only load a '{KIND}' document"
        )
    try:
        doc = _Document.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<document>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidBitstreamError(f"invalid {KIND}: {problems}") from exc
    functions = tuple(BitstreamFunction(f.name, f.fn_code, f.kernel) for f in doc.functions)
    for attr in ("fn_code", "name"):
        values = [getattr(f, attr) for f in functions]
        duplicates = sorted({str(v) for v in values if values.count(v) > 1})
        if duplicates:
            label = "fnCode" if attr == "fn_code" else "name"
            raise InvalidBitstreamError(
                f"invalid {KIND}: functions[].{label} {', '.join(duplicates)} appear(s) more "
                "than once; each function needs its own fnCode and name"
            )
    return SoftwareBitstream(name=doc.name, functions=functions)


async def fetch_artifact(
    uri: str, *, max_bytes: int = MAX_ARTIFACT_BYTES, timeout: float = 30.0
) -> bytes:
    """Read a `file://` or `http(s)://` artifact, at most `max_bytes`."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ArtifactUnavailableError(
                f"artifact {uri!r} names host {parsed.netloc!r}; file:// artifacts must be local "
                "(file:///absolute/path)"
            )
        return await asyncio.to_thread(_read_file, Path(unquote(parsed.path)), uri, max_bytes)
    if parsed.scheme in ("http", "https"):
        return await _read_http(uri, max_bytes=max_bytes, timeout=timeout)
    raise ArtifactUnavailableError(
        f"artifact {uri!r} has an unsupported scheme; use file:///… or http(s)://…"
    )


def _read_file(path: Path, uri: str, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ArtifactUnavailableError(
            f"cannot read artifact {uri!r}: {exc.strerror or exc}; check the Bitstream's "
            "spec.artifact.uri and that the file exists on the NAA's host"
        ) from exc
    if len(data) > max_bytes:
        raise ArtifactUnavailableError(
            f"artifact {uri!r} is larger than {max_bytes} bytes; a software bitstream is a "
            "small YAML/JSON document"
        )
    return data


async def _read_http(uri: str, *, max_bytes: int, timeout: float) -> bytes:
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(uri) as response,
        ):
            if response.status != 200:
                raise ArtifactUnavailableError(
                    f"fetching artifact {uri!r} answered HTTP {response.status}; check the "
                    "Bitstream's spec.artifact.uri and the artifact server"
                )
            data = await response.content.read(max_bytes + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ArtifactUnavailableError(
            f"cannot fetch artifact {uri!r}: {exc or type(exc).__name__}; check the URI and "
            "that the artifact server is reachable from the NAA"
        ) from exc
    if len(data) > max_bytes:
        raise ArtifactUnavailableError(
            f"artifact {uri!r} is larger than {max_bytes} bytes; a software bitstream is a "
            "small YAML/JSON document"
        )
    return data
