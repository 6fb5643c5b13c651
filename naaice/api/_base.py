"""Building blocks of the custom-resource models: the camelCase model base, RFC 3339
timestamps, object metadata, conditions and the from_body/to_body round trip.

Used by the kind modules of `naaice.api`; the operator and the agent use the public models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from naaice.api._errors import InvalidObjectError
from naaice.api._names import API_VERSION, ConditionStatus


def _rfc3339(value: datetime) -> str:
    """Serialise as Kubernetes does: UTC, `Z`, fractional seconds only when present."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[AwareDatetime, PlainSerializer(_rfc3339, return_type=str)]
"""An RFC 3339 `date-time` with a time zone, written back in UTC with `Z`."""

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DIGEST = r"^sha256:[0-9a-f]{64}$"

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
LabelSafeName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_SUBDOMAIN)]
"""An object name that is also a label value (NAA and NAAJob names)."""
Digest = Annotated[str, Field(max_length=71, pattern=DIGEST)]
FnCode = Annotated[int, Field(ge=1, le=127)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Model(BaseModel):
    """Strict camelCase model: unknown fields are refused, because the CRD schema is the
    contract and a field the model does not know is a bug in one of the two."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )


class OpenModel(Model):
    """A model of a Kubernetes type naaice only partly cares about (pod templates, object
    metadata): the known fields are typed, the others are kept as they came."""

    model_config = ConfigDict(extra="allow")


class ObjectMeta(OpenModel):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None


class Condition(Model):
    """One status condition, as the Kubernetes API conventions (metav1.Condition) define it."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: Timestamp
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    message: str = Field(max_length=32768)


def find_condition(conditions: Sequence[Condition] | None, type_: str) -> Condition | None:
    """The condition of `type_`, or None when the status does not carry it (yet)."""
    for condition in conditions or ():
        if condition.type == type_:
            return condition
    return None


class Resources(Model):
    """FPGA resources: what a board has (NAA) or what a design uses (Bitstream). Counts of
    LUTs, flip-flops, DSP slices, 36 Kb block RAMs and UltraRAMs; memory in bytes."""

    lut: int | None = Field(default=None, ge=0)
    ff: int | None = Field(default=None, ge=0)
    dsp: int | None = Field(default=None, ge=0)
    bram: int | None = Field(default=None, ge=0)
    uram: int | None = Field(default=None, ge=0)
    memory_bytes: int | None = Field(default=None, ge=0)


class CustomObject(Model):
    """A whole custom object: `apiVersion`, `kind`, `metadata`, `spec` and (maybe) `status`."""

    KIND: ClassVar[str]

    api_version: str = Field(default=API_VERSION, pattern=r"^naaice\.io/v1alpha1$")
    kind: str
    metadata: ObjectMeta

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Parse a body as the API server, kopf or a YAML file gives it. Raises
        `InvalidObjectError` naming every offending field by its camelCase path."""
        if body.get("kind") != cls.KIND:
            raise InvalidObjectError(
                cls.KIND,
                [("kind", f"is {body.get('kind')!r}, expected {cls.KIND!r}")],
            )
        try:
            return cls.model_validate(dict(body))
        except ValidationError as exc:
            raise InvalidObjectError(cls.KIND, _problems(exc)) from None

    def to_body(self) -> dict[str, Any]:
        """The JSON-ready body: camelCase, only the fields that were given (the API server
        fills in the CRD defaults), `apiVersion` and `kind` always present."""
        body = self.model_dump(mode="json", exclude_unset=True)
        body["apiVersion"] = self.api_version
        body["kind"] = self.kind
        return body


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        path = ""
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        problems.append((path or "<body>", error["msg"]))
    return problems
