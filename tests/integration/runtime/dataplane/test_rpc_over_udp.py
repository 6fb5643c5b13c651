"""RPCs over real UDP sockets on loopback: sizes from 1 B to 64 MiB, 1 to 31 regions, many
RPCs per connection, concurrent clients, slots, unknown fn codes, kernel deadlines,
single-send and in+out regions, and the five-call host API driven by NAA_SPEC."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from naa_runtime import client
from naa_runtime.mrsp import MrFlags, MrspError, MrspErrorCode
from naa_runtime.rpc import (
    KERNEL_FAILED,
    KERNEL_TIMEOUT,
    UNKNOWN_FUNCTION,
    ConnectError,
    HostConnection,
    Region,
)
from tests.support.roce import ServerFactory, next_loopback


def _connect(srv_address: str, host: str, regions: list[Region]) -> HostConnection:
    h = HostConnection(naa_address=srv_address, local_address=host)
    h.connect()
    h.register(regions)
    h.mrsp()
    return h


def _inout(a: np.ndarray) -> Region:
    return Region(view=memoryview(a).cast("B"), flags=MrFlags.INPUT | MrFlags.OUTPUT)


@pytest.mark.parametrize("size", [1, 3, 4095, 4096, 4097, 1 << 20, 64 << 20], ids=lambda n: f"{n}B")
def test_kernel_1_adds_one_to_every_byte_of_an_in_out_region(
    naa_server: ServerFactory, host_address: str, size: int
) -> None:
    srv = naa_server()
    rng = np.random.default_rng(size)
    a = rng.integers(0, 256, size, dtype=np.uint8)
    expected = a + np.uint8(1)
    h = _connect(srv.address, host_address, [_inout(a)])
    try:
        assert h.call(1, timeout=120) == 0
        assert np.array_equal(a, expected)
        assert h.bytes_received == size
    finally:
        h.disconnect()
    assert srv.wait_idle()


@pytest.mark.parametrize(("fn", "delta"), [(1, 1), (2, 2), (3, 0)])
def test_the_naaice_test_kernels_add_one_add_two_and_do_nothing(
    naa_server: ServerFactory, host_address: str, fn: int, delta: int
) -> None:
    srv = naa_server()
    a = np.arange(9000, dtype=np.uint8)
    expected = a + np.uint8(delta)
    h = _connect(srv.address, host_address, [_inout(a)])
    try:
        assert h.call(fn, timeout=30) == 0
        assert np.array_equal(a, expected)
    finally:
        h.disconnect()


@pytest.mark.parametrize("count", [1, 2, 7, 31])
def test_up_to_31_regions_are_written_and_returned_in_index_order(
    naa_server: ServerFactory, host_address: str, count: int
) -> None:
    srv = naa_server()
    arrays = [np.full(100 + 37 * i, i, dtype=np.uint8) for i in range(count)]
    h = _connect(srv.address, host_address, [_inout(a) for a in arrays])
    try:
        assert h.call(2, timeout=30) == 0
        for i, a in enumerate(arrays):
            assert np.all(a == i + 2), f"region {i}"
        assert h.bytes_received == arrays[-1].nbytes  # only the last write counts
    finally:
        h.disconnect()


def test_32_regions_are_refused_with_mrsp_error_3(
    naa_server: ServerFactory, host_address: str
) -> None:
    srv = naa_server()
    arrays = [np.zeros(8, np.uint8) for _ in range(32)]
    h = HostConnection(naa_address=srv.address, local_address=host_address)
    h.connect()
    h.register([_inout(a) for a in arrays])
    with pytest.raises(MrspError) as info:
        h.mrsp()
    assert info.value.code == MrspErrorCode.TOO_MANY_REGIONS
    h.disconnect()
    assert srv.stats.mrsp_errors["too_many_regions"] == 1


def test_many_rpcs_run_on_one_connection(naa_server: ServerFactory, host_address: str) -> None:
    srv = naa_server()
    a = np.zeros(5000, np.uint8)
    h = _connect(srv.address, host_address, [_inout(a)])
    try:
        for _ in range(200):
            assert h.call(1, timeout=10) == 0
        assert np.all(a == 200)
    finally:
        h.disconnect()
    assert srv.stats.rpcs[(1, "ok")] == 200


def test_separate_input_and_output_regions_get_the_kernel_result(
    naa_server: ServerFactory, host_address: str
) -> None:
    srv = naa_server()
    src = np.arange(10000, dtype=np.uint32)
    dst = np.zeros(10000, np.uint32)
    h = _connect(
        srv.address,
        host_address,
        [
            Region(view=memoryview(src).cast("B"), flags=MrFlags.INPUT),
            Region(view=memoryview(dst).cast("B"), flags=MrFlags.OUTPUT, requested_addr=40960),
        ],
    )
    try:
        assert h.call(20, timeout=10) == 0
        assert np.array_equal(src, dst)
    finally:
        h.disconnect()


def test_a_single_send_region_is_sent_only_with_the_first_rpc(
    naa_server: ServerFactory, host_address: str
) -> None:
    srv = naa_server()
    weights = np.full(64, 7, np.uint8)
    out = np.zeros(64, np.uint8)
    h = _connect(
        srv.address,
        host_address,
        [
            Region(view=memoryview(weights), flags=MrFlags.INPUT | MrFlags.SINGLESEND),
            Region(view=memoryview(out), flags=MrFlags.OUTPUT, requested_addr=4096),
        ],
    )
    try:
        assert h.call(20, timeout=10) == 0
        assert np.all(out == 7)
        weights[:] = 9  # not sent again: the NAA keeps the first copy
        assert h.call(20, timeout=10) == 0
        assert np.all(out == 7)
    finally:
        h.disconnect()


def test_the_user_bits_of_the_immediate_reach_the_kernel_and_its_code_comes_back(
    naa_server: ServerFactory, host_address: str
) -> None:
    srv = naa_server()
    a = np.zeros(4, np.uint8)
    h = _connect(srv.address, host_address, [_inout(a)])
    try:
        assert h.call(21, user=0xABCDEF, timeout=10) == 0xABCDEF
    finally:
        h.disconnect()


def test_an_unknown_fn_code_is_answered_with_an_error_code_and_the_connection_lives(
    naa_server: ServerFactory, host_address: str
) -> None:
    srv = naa_server()
    a = np.zeros(16, np.uint8)
    h = _connect(srv.address, host_address, [_inout(a)])
    try:
        assert h.call(99, timeout=10) == UNKNOWN_FUNCTION
        assert h.call(1, timeout=10) == 0
        assert np.all(a == 1)
    finally:
        h.disconnect()
    assert srv.stats.rpcs[(99, "unknown_function")] == 1


def test_a_kernel_past_its_deadline_is_reported_as_kernel_timeout(
    naa_server: ServerFactory, host_address: str
) -> None:
    srv = naa_server(kernel_timeout=0.2)
    a = np.zeros(16, np.uint8)
    h = _connect(srv.address, host_address, [_inout(a)])
    try:
        assert h.call(22, timeout=10) == KERNEL_TIMEOUT
        assert h.call(23, timeout=10) == KERNEL_FAILED
        assert h.call(1, timeout=10) == 0
    finally:
        h.disconnect()


def test_concurrent_clients_each_get_their_own_results(naa_server: ServerFactory) -> None:
    srv = naa_server(slots=4)
    errors: list[BaseException] = []

    def one(k: int) -> None:
        try:
            a = np.full(300_000 + k, k, np.uint8)
            h = _connect(srv.address, next_loopback(), [_inout(a)])
            try:
                for _ in range(10):
                    h.call(1 if k % 2 else 2, timeout=30)
            finally:
                h.disconnect()
            assert np.all(a == (k + (10 if k % 2 else 20)) % 256)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert srv.stats.connections_accepted == 4


def test_a_connection_beyond_the_free_slots_is_rejected(
    naa_server: ServerFactory, host_address: str
) -> None:
    srv = naa_server(slots=1)
    a = np.zeros(4, np.uint8)
    first = _connect(srv.address, host_address, [_inout(a)])
    try:
        second = HostConnection(naa_address=srv.address, local_address=next_loopback())
        with pytest.raises(ConnectError, match="no free slot"):
            second.connect()
    finally:
        first.disconnect()
    assert srv.wait_idle()
    again = _connect(srv.address, host_address, [_inout(a)])
    again.disconnect()
    assert srv.stats.connections_rejected == 1


def test_the_host_api_binds_naa_spec_entries_and_runs_rpcs(
    naa_server: ServerFactory, host_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = naa_server()
    monkeypatch.setenv("NAA_SPEC", f"{srv.address}:12345:3:1,{srv.address}::1:1,bad:entry")
    client.reset_naa_spec()
    a = np.arange(1000, dtype=np.uint8)
    handle = client.naa_create(
        1, [client.NaaParam(a)], [client.NaaParam(a)], local_address=host_address
    )
    try:
        with pytest.raises(client.NaaError, match="no unbound NAA for fn code 1"):
            client.naa_create(1, [client.NaaParam(a)], [], local_address=next_loopback())
        client.naa_invoke(handle)
        status = client.naa_wait(handle, timeout=10)
        assert status.state == client.State.FINISHED
        assert status.naa_error == 0
        assert np.array_equal(a, (np.arange(1000) + 1).astype(np.uint8))
        client.naa_invoke(handle)
        flag = False
        while not flag:
            flag, status = client.naa_test(handle)
        assert status.naa_error == 0
    finally:
        client.naa_finalize(handle)
    with client.Naa(3, inputs=[a], outputs=[a], local_address=next_loopback()) as naa:
        assert naa() == 0
    client.reset_naa_spec()
