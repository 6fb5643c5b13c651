"""Names the parts must agree on: Lease names, holder identities and the bound-at and
bound-energy annotations."""

from __future__ import annotations

import random

import pytest

from naaice.api import (
    BoundEnergy,
    HolderIdentity,
    InvalidHolderIdentityError,
    InvalidNameError,
    lease_name,
    naa_of_lease,
    parse_bound_at,
    parse_bound_energy,
    render_bound_at,
    render_bound_energy,
)

UID = "0f8b9a1e-7c2d-4e51-9a3b-6d2c1e0f9a77"


def test_the_lease_of_an_naa_is_named_naa_dash_name_and_maps_back() -> None:
    assert lease_name("naa-0") == "naa-naa-0"
    assert naa_of_lease("naa-naa-0") == "naa-0"
    assert naa_of_lease("kube-scheduler") is None
    assert naa_of_lease("naa-") is None


@pytest.mark.parametrize("bad", ["", "NAA-0", "naa_0", "n" * 64, "-naa"])
def test_a_name_that_cannot_be_a_label_value_has_no_lease(bad: str) -> None:
    with pytest.raises(InvalidNameError, match="rename the NetworkAttachedAccelerator"):
        lease_name(bad)


def test_holder_identity_renders_and_parses_back() -> None:
    holder = HolderIdentity(namespace="team-a", name="poet-surrogate", uid=UID)
    assert holder.render() == f"team-a/poet-surrogate/{UID}"
    assert HolderIdentity.parse(holder.render()) == holder


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "team-a/poet-surrogate",
        f"team-a/poet-surrogate/{UID}/extra",
        f"/poet-surrogate/{UID}",
        "team-a/poet-surrogate/",
        f"Team-A/poet-surrogate/{UID}",
        f"team-a/{'j' * 64}/{UID}",
        "kube-controller-manager_7f9c",
    ],
)
def test_a_holder_identity_another_tool_wrote_is_refused(bad: str) -> None:
    with pytest.raises(InvalidHolderIdentityError, match="holderIdentity"):
        HolderIdentity.parse(bad)


def test_bound_at_keeps_nanoseconds_through_render_and_parse() -> None:
    rng = random.Random(20261124)
    for _ in range(2000):
        ns = rng.randrange(0, 4_102_444_800 * 10**9)  # until 2100
        text = render_bound_at(ns)
        assert text.endswith("Z")
        assert len(text.split(".")[1]) == 10  # nine digits and the Z
        assert parse_bound_at(text) == ns


def test_bound_at_reads_other_rfc3339_spellings() -> None:
    assert parse_bound_at("1970-01-01T00:00:01Z") == 10**9
    assert parse_bound_at("1970-01-01T01:00:01.5+01:00") == 1_500_000_000
    assert render_bound_at(1) == "1970-01-01T00:00:00.000000001Z"


@pytest.mark.parametrize("bad", ["yesterday", "2026-11-24 23:00:00Z", "2026-11-24T23:00:00"])
def test_a_bound_at_that_is_not_rfc3339_is_refused(bad: str) -> None:
    with pytest.raises(InvalidNameError, match="RFC 3339"):
        parse_bound_at(bad)


def test_bound_energy_keeps_sensor_time_and_counter_exactly_and_power_to_the_milliwatt() -> None:
    text = render_bound_energy(
        timestamp_ns=1_764_025_200_000_000_001, energy_uj=2**62 + 7, power_w=41.99951
    )
    assert text == f"1764025200000000001:{2**62 + 7}:42000"
    assert parse_bound_energy(text) == BoundEnergy(
        timestamp_ns=1_764_025_200_000_000_001, energy_uj=2**62 + 7, power_mw=42000
    )


@pytest.mark.parametrize("bad", ["", "1:2", "1:2:3:4", "-1:2:3", "1:2:x", "1.5:2:3", " 1:2:3"])
def test_a_bound_energy_that_is_not_three_counts_is_refused(bad: str) -> None:
    with pytest.raises(InvalidNameError, match="timestampNs"):
        parse_bound_energy(bad)


def test_a_reading_with_a_negative_or_nan_value_cannot_be_rendered() -> None:
    with pytest.raises(InvalidNameError, match="non-negative"):
        render_bound_energy(timestamp_ns=1, energy_uj=-1, power_w=1.0)
    with pytest.raises(InvalidNameError, match="non-negative"):
        render_bound_energy(timestamp_ns=1, energy_uj=1, power_w=float("nan"))
