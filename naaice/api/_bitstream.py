"""The `Bitstream` model (cluster-scoped): an FPGA design, the functions it provides, where
its artifact lives and the artifact's sha256 digest.

Mirrors crds/naaice.io_bitstreams.yaml; the operator reads it to place and flash."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from naaice.api._base import CustomObject, Digest, DnsLabel, FnCode, Model, Resources
from naaice.api._names import KIND_BITSTREAM

MAX_INPUT_PARAMS = 31
"""Inputs one RPC can carry: the MRSP buffer holds 31 region entries in practice
(docs/reference/naa-spec.md)."""


class BitstreamFunction(Model):
    name: DnsLabel
    fn_code: FnCode
    input_params: int = Field(ge=1, le=MAX_INPUT_PARAMS)


class Artifact(Model):
    uri: str = Field(min_length=1, max_length=2048)


class BitstreamSpec(Model):
    functions: list[BitstreamFunction] = Field(min_length=1, max_length=127)
    compatible_boards: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        min_length=1, max_length=64
    )
    artifact: Artifact
    digest: Digest
    resources: Resources | None = None
    flash_seconds: float | None = Field(default=None, ge=0, le=3600)

    def function(self, name: str) -> BitstreamFunction | None:
        """The function called `name`, or None."""
        return next((f for f in self.functions if f.name == name), None)


class Bitstream(CustomObject):
    KIND: ClassVar[str] = KIND_BITSTREAM

    kind: Literal["Bitstream"] = KIND_BITSTREAM
    spec: BitstreamSpec
