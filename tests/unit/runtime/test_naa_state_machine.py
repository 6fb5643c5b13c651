"""The software NAA's flash and scrub decisions (Idle/Flashing/Ready/Error)."""

from __future__ import annotations

import pytest

from naa_runtime.naa import (
    FlashDecision,
    NAAState,
    ScrubDecision,
    decide_flash,
    decide_scrub,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def _flash(
    state: NAAState,
    *,
    loaded: str | None = None,
    target: str | None = None,
    requested: str = A,
    connections: int = 0,
    force: bool = False,
) -> FlashDecision:
    return decide_flash(
        state=state,
        loaded_digest=loaded,
        target_digest=target,
        requested_digest=requested,
        active_connections=connections,
        force=force,
    )


@pytest.mark.parametrize("state", [NAAState.IDLE, NAAState.READY, NAAState.ERROR])
def test_a_new_digest_is_flashed_from_any_settled_state(state: NAAState) -> None:
    assert _flash(state, loaded=B if state is NAAState.READY else None) is FlashDecision.START


def test_the_loaded_digest_is_not_flashed_again_even_with_connections_or_force() -> None:
    assert _flash(NAAState.READY, loaded=A, connections=3) is FlashDecision.ALREADY_LOADED
    assert _flash(NAAState.READY, loaded=A, force=True) is FlashDecision.ALREADY_LOADED


def test_the_same_digest_while_flashing_joins_the_flash_in_progress() -> None:
    assert _flash(NAAState.FLASHING, target=A) is FlashDecision.ALREADY_FLASHING


def test_another_digest_while_flashing_is_refused_even_when_forced() -> None:
    assert _flash(NAAState.FLASHING, target=B, force=True) is FlashDecision.REFUSE_FLASHING_OTHER


def test_active_connections_block_a_flash_unless_forced() -> None:
    assert _flash(NAAState.READY, loaded=B, connections=1) is FlashDecision.REFUSE_CONNECTIONS
    assert _flash(NAAState.READY, loaded=B, connections=1, force=True) is FlashDecision.START


def test_error_state_with_the_failed_digest_is_flashed_again() -> None:
    # An Error NAA has no loaded bitstream, so a retry of the same digest really flashes.
    assert _flash(NAAState.ERROR, loaded=None, requested=A) is FlashDecision.START


def test_scrub_keeps_the_state_of_a_settled_naa() -> None:
    for state in (NAAState.IDLE, NAAState.READY):
        assert decide_scrub(state=state) is ScrubDecision.SCRUB


def test_scrub_resets_an_error_naa_to_idle() -> None:
    assert decide_scrub(state=NAAState.ERROR) is ScrubDecision.RESET_TO_IDLE


def test_scrub_is_refused_while_flashing() -> None:
    assert decide_scrub(state=NAAState.FLASHING) is ScrubDecision.REFUSE_FLASHING
