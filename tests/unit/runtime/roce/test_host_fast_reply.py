"""`HostConnection._on_fast_reply` (what `Endpoint.rpc_call` reports instead of the two
completions of a round trip finished in C) leaves the connection as those two completions
through `_on_completion` leave it, in the state `call` sets up and in any other."""

from __future__ import annotations

import pytest

from naa_runtime.roce.qp import Completion, WcOpcode, WcStatus
from naa_runtime.rpc import HostConnection
from naa_runtime.rpc.host import State


def _conn(state: State, pending: int) -> HostConnection:
    h = HostConnection(naa_address="127.0.0.1", local_address="127.0.0.1")
    h.state = state
    h._pending_writes = pending
    return h


def _view(h: HostConnection) -> tuple[object, ...]:
    return (h.state, h._pending_writes, h.return_code, h.bytes_received)


@pytest.mark.parametrize(
    ("state", "pending"),
    [
        (State.DATA_SENDING, 1),  # what call() sets up: the fast branch
        (State.DATA_SENDING, 2),
        (State.DATA_RECEIVING, 1),
        (State.ERROR, 1),
        (State.FINISHED, 0),
    ],
)
def test_the_reply_report_equals_the_two_completions(state: State, pending: int) -> None:
    imm, nbytes = (0x1234 << 8) | 0x03, 7
    fast, ref = _conn(state, pending), _conn(state, pending)
    fast._on_fast_reply(imm, nbytes)
    ref._on_completion(
        Completion(opcode=WcOpcode.RDMA_WRITE, status=WcStatus.SUCCESS, wr_id=2, byte_len=1)
    )
    ref._on_completion(
        Completion(
            opcode=WcOpcode.RECV_RDMA_WITH_IMM,
            status=WcStatus.SUCCESS,
            wr_id=2,
            byte_len=nbytes,
            imm=imm,
            solicited=True,
        )
    )
    assert _view(fast) == _view(ref)
    if (state, pending) == (State.DATA_SENDING, 1):
        assert _view(fast) == (State.FINISHED, 0, 0x1234, nbytes)
