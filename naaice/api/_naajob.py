"""The `NAAJob` model (namespaced): what a user applies to run a host application with NAAs.

Mirrors crds/naaice.io_naajobs.yaml field for field; the operator parses bodies with
`NAAJob.from_body` at the handler edge and writes status through `NAAJobStatus`."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, JsonValue

from naaice.api._base import (
    Condition,
    CustomObject,
    Digest,
    DnsLabel,
    DnsSubdomain,
    FnCode,
    LabelSafeName,
    Model,
    OpenModel,
    Port,
    Timestamp,
)
from naaice.api._names import KIND_NAAJOB


class PlacementPolicy(StrEnum):
    FIRST_FIT = "FirstFit"
    """The first free, healthy, compatible NAA in name order (the NAAICE Slurm plugin's rule)."""
    WARM_FIRST = "WarmFirst"
    """Prefer NAAs that already hold the needed bitstream (no flash), then first fit."""


class NAARequest(Model):
    """One named request: `count` NAAs that provide `function`."""

    name: DnsLabel
    function: DnsLabel
    count: int = Field(default=1, ge=1, le=64)
    bitstream: DnsSubdomain | None = None


class EnvVar(OpenModel):
    name: str = Field(min_length=1, max_length=256)
    value: str | None = None
    value_from: JsonValue = None


class Container(OpenModel):
    name: DnsLabel
    image: str = Field(min_length=1, max_length=1024)
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = Field(default=None, max_length=256)


class PodSpec(OpenModel):
    """The pod spec of the host application; the fields naaice reads are typed, the rest of
    the Kubernetes PodSpec passes through untouched."""

    containers: list[Container] = Field(min_length=1, max_length=16)
    restart_policy: Literal["Never", "OnFailure"] = "Never"


class TemplateMetadata(OpenModel):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class PodTemplate(Model):
    metadata: TemplateMetadata | None = None
    spec: PodSpec


class NAAJobSpec(Model):
    naas: list[NAARequest] = Field(min_length=1, max_length=16)
    replicas: int = Field(default=1, ge=1, le=128)
    template: PodTemplate
    energy_budget_joules: float | None = Field(default=None, gt=0)
    backoff_limit: int = Field(default=2, ge=0, le=100)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=31_536_000)
    suspend: bool = False
    placement_policy: PlacementPolicy = PlacementPolicy.FIRST_FIT
    scrub_on_release: bool = False

    def request(self, name: str) -> NAARequest | None:
        """The request called `name`, or None."""
        return next((r for r in self.naas if r.name == name), None)


class AssignedNAA(Model):
    """One NAA bound to one request: everything an `NAA_SPEC` entry and the release need."""

    request: DnsLabel
    naa: LabelSafeName
    address: str = Field(min_length=1, max_length=253)
    port: Port
    """The NAA's CM port (its `spec.cmPort`): the port field of the original NAA_SPEC."""
    fn_code: FnCode
    param_count: int = Field(ge=0, le=32)
    bitstream: DnsSubdomain
    digest: Digest


class NAAEnergy(Model):
    naa: LabelSafeName
    joules: float = Field(ge=0)


class JobEnergy(Model):
    """Energy of the job's NAAs, integrated over each NAA's bind–unbind window."""

    per_naa: list[NAAEnergy] | None = Field(default=None, alias="perNAA", max_length=256)
    total_joules: float | None = Field(default=None, ge=0)
    coverage: float | None = Field(default=None, ge=0, le=1)
    method: str | None = Field(default=None, max_length=64)
    window_start: Timestamp | None = None
    window_end: Timestamp | None = None
    average_watts: float | None = Field(default=None, ge=0)
    peak_watts: float | None = Field(default=None, ge=0)
    error_bound_joules: float | None = Field(default=None, ge=0)


class NAAJobStatus(Model):
    conditions: list[Condition] | None = Field(default=None, max_length=16)
    observed_generation: int | None = Field(default=None, ge=0)
    assigned_naas: list[AssignedNAA] | None = Field(
        default=None, alias="assignedNAAs", max_length=256
    )
    naa_spec: str | None = Field(default=None, max_length=32768)
    energy: JobEnergy | None = None
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    failed_attempts: int | None = Field(default=None, ge=0)


class NAAJob(CustomObject):
    KIND: ClassVar[str] = KIND_NAAJOB

    kind: Literal["NAAJob"] = KIND_NAAJOB
    spec: NAAJobSpec
    status: NAAJobStatus | None = None
