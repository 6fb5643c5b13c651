"""Names that several parts must spell the same way: API group and version, kinds and plurals,
labels, annotations, condition types and the Lease naming scheme (docs/design/contracts.md).

The operator, the node agent, the runtime and the tests import these instead of repeating
string literals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from naaice.api._errors import InvalidHolderIdentityError, InvalidNameError

GROUP: Final = "naaice.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

KIND_NAAJOB: Final = "NAAJob"
KIND_NAA: Final = "NetworkAttachedAccelerator"
KIND_BITSTREAM: Final = "Bitstream"

PLURAL_NAAJOBS: Final = "naajobs"
PLURAL_NAAS: Final = "networkattachedaccelerators"
PLURAL_BITSTREAMS: Final = "bitstreams"

CRD_NAAJOBS: Final = f"{PLURAL_NAAJOBS}.{GROUP}"
CRD_NAAS: Final = f"{PLURAL_NAAS}.{GROUP}"
CRD_BITSTREAMS: Final = f"{PLURAL_BITSTREAMS}.{GROUP}"
CATEGORY: Final = "naaice"

LABEL_NAAJOB: Final = f"{GROUP}/naajob"
"""On every pod of an NAAJob (value: the NAAJob's name); the webhook keys on it."""
LABEL_NAA: Final = f"{GROUP}/naa"
"""On every allocation Lease (value: the NAA's name)."""
ANNOTATION_BOUND_AT: Final = f"{GROUP}/bound-at"
"""On every allocation Lease: when the NAA was bound, RFC 3339 with nanoseconds."""
ANNOTATION_UNBOUND_AT: Final = f"{GROUP}/unbound-at"
"""Optional, on an allocation Lease about to be released: the instant the holder's energy
window ends, same format as bound-at (`render_bound_at`/`parse_bound_at`). The operator writes
it before deleting the Lease; the node agent ends the job's attribution at exactly that instant
instead of when the deletion arrives."""
ANNOTATION_BOUND_ENERGY: Final = f"{GROUP}/bound-energy"
"""Optional, on an allocation Lease: the NAA's last sensor reading taken just before the bind
instant, `<timestampNs>:<energyMicrojoules>:<powerMilliwatts>` (`render_bound_energy` /
`parse_bound_energy`; sensor time and the never-decreasing hardware counter of
`GET /v1/sensors`). The operator writes it in the Lease body at creation, when that reading had
a counter; an operator restarted mid-job seeds the job's energy window with it, so the counter
delta still covers the whole window."""

LEASE_NAME_PREFIX: Final = "naa-"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL_PATTERN: Final = _DNS_LABEL.pattern
DNS_SUBDOMAIN_PATTERN: Final = _DNS_SUBDOMAIN.pattern


class NAAJobConditionType(StrEnum):
    """Condition types an NAAJob's status carries, in lifecycle order."""

    SCHEDULED = "Scheduled"
    FLASHED = "Flashed"
    READY = "Ready"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class NAAConditionType(StrEnum):
    """Condition types a NetworkAttachedAccelerator's status carries."""

    READY = "Ready"
    HEALTHY = "Healthy"
    REACHABLE = "Reachable"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


def is_dns_label(value: str) -> bool:
    """True when `value` is an RFC 1123 label (what Kubernetes accepts as a label value,
    namespace or Service name)."""
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """True when `value` is an RFC 1123 subdomain (what most object names must be)."""
    return len(value) <= 253 and _DNS_SUBDOMAIN.fullmatch(value) is not None


def is_label_safe_name(value: str) -> bool:
    """True when `value` is an object name that is also a valid label value: an RFC 1123
    subdomain of at most 63 characters. NAA and NAAJob names must be (the CRDs enforce it)."""
    return len(value) <= 63 and is_dns_subdomain(value)


def lease_name(naa: str) -> str:
    """The allocation Lease's name for the NAA named `naa`: `naa-<naa>`."""
    if not is_label_safe_name(naa):
        raise InvalidNameError(
            f"NAA name {naa!r} is not an RFC 1123 subdomain of at most 63 characters; "
            "rename the NetworkAttachedAccelerator"
        )
    return LEASE_NAME_PREFIX + naa


def naa_of_lease(name: str) -> str | None:
    """The NAA a Lease named `name` allocates, or None when the name is not an allocation's."""
    if not name.startswith(LEASE_NAME_PREFIX):
        return None
    naa = name.removeprefix(LEASE_NAME_PREFIX)
    return naa if is_label_safe_name(naa) else None


@dataclass(frozen=True, slots=True)
class HolderIdentity:
    """Who holds an NAA: the Lease's `holderIdentity`, `<namespace>/<naajob name>/<naajob uid>`.

    The UID makes a recreated NAAJob of the same name a different holder, so a Lease left by a
    deleted job is recognised as stale and reclaimed."""

    namespace: str
    name: str
    uid: str

    def __post_init__(self) -> None:
        if not is_dns_label(self.namespace):
            raise InvalidHolderIdentityError(
                f"namespace {self.namespace!r} is not an RFC 1123 label"
            )
        if not is_dns_label(self.name):
            raise InvalidHolderIdentityError(f"NAAJob name {self.name!r} is not an RFC 1123 label")
        if not self.uid or "/" in self.uid or len(self.uid) > 128:
            raise InvalidHolderIdentityError(
                f"uid {self.uid!r} must be a non-empty object UID without '/'"
            )

    def render(self) -> str:
        return f"{self.namespace}/{self.name}/{self.uid}"

    @classmethod
    def parse(cls, value: str) -> HolderIdentity:
        """Parse a `holderIdentity`; raises `InvalidHolderIdentityError` for anything that is not
        `<namespace>/<name>/<uid>` (for example a Lease another tool wrote)."""
        parts = value.split("/")
        if len(parts) != 3:
            raise InvalidHolderIdentityError(
                f"holderIdentity {value!r} is not '<namespace>/<naajob name>/<naajob uid>'"
            )
        try:
            return cls(namespace=parts[0], name=parts[1], uid=parts[2])
        except InvalidHolderIdentityError as exc:
            raise InvalidHolderIdentityError(f"holderIdentity {value!r}: {exc}") from None


def render_bound_at(unix_ns: int) -> str:
    """`naaice.io/bound-at` value for a bind at `unix_ns` (CLOCK_REALTIME nanoseconds):
    RFC 3339 in UTC with all nine fractional digits, e.g. `2026-11-24T23:00:00.000000001Z`."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


_BOUND_AT = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def parse_bound_at(value: str) -> int:
    """Inverse of `render_bound_at`: accepts any RFC 3339 time with up to nine fractional
    digits and returns CLOCK_REALTIME nanoseconds."""
    match = _BOUND_AT.fullmatch(value)
    if match is None:
        raise InvalidNameError(
            f"{ANNOTATION_BOUND_AT} {value!r} is not an RFC 3339 time such as "
            "2026-11-24T23:00:00.000000001Z"
        )
    base, fraction, zone = match.groups()
    offset = "+00:00" if zone == "Z" else zone
    try:
        seconds = int(datetime.fromisoformat(base + offset).timestamp())
    except ValueError as exc:
        raise InvalidNameError(f"{ANNOTATION_BOUND_AT} {value!r}: {exc}") from None
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


@dataclass(frozen=True, slots=True)
class BoundEnergy:
    """The sensor reading a `naaice.io/bound-energy` annotation records."""

    timestamp_ns: int
    energy_uj: int
    power_mw: int


def render_bound_energy(*, timestamp_ns: int, energy_uj: int, power_w: float) -> str:
    """`naaice.io/bound-energy` value for a reading at sensor time `timestamp_ns` with hardware
    counter `energy_uj` and board power `power_w` (kept to the milliwatt)."""
    if timestamp_ns < 0 or energy_uj < 0 or not power_w >= 0.0:
        raise InvalidNameError(
            f"{ANNOTATION_BOUND_ENERGY}: a sensor reading needs a non-negative time, counter and "
            f"power, got {timestamp_ns} ns, {energy_uj} µJ, {power_w} W"
        )
    return f"{timestamp_ns}:{energy_uj}:{round(power_w * 1000)}"


_BOUND_ENERGY = re.compile(r"^(\d{1,20}):(\d{1,20}):(\d{1,12})$")


def parse_bound_energy(value: str) -> BoundEnergy:
    """Inverse of `render_bound_energy`; raises `InvalidNameError` for anything else."""
    match = _BOUND_ENERGY.fullmatch(value)
    if match is None:
        raise InvalidNameError(
            f"{ANNOTATION_BOUND_ENERGY} {value!r} is not "
            "'<timestampNs>:<energyMicrojoules>:<powerMilliwatts>' such as "
            "'1764025200000000001:123456789:42000'"
        )
    t, uj, mw = match.groups()
    return BoundEnergy(timestamp_ns=int(t), energy_uj=int(uj), power_mw=int(mw))
