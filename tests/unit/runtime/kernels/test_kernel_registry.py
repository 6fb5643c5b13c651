"""The kernel registry and the NAAICE test kernels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from naa_runtime.kernels import (
    TEST_FUNCTIONS,
    DuplicateKernelError,
    KernelContext,
    KernelTimeout,
    RegistryError,
    UnknownKernelError,
    default_registry,
)
from naa_runtime.kernels.testkernels import AddConstant, Busy, NoOp

FAR = time.monotonic() + 3600


def _run(fn: int, inputs: list[memoryview], outputs: list[memoryview]) -> int:
    kernel = default_registry().bind(TEST_FUNCTIONS).lookup(fn)
    assert kernel is not None
    return kernel(inputs=inputs, outputs=outputs, user=0, deadline=FAR)


def test_fn1_adds_one_to_every_byte_with_wraparound() -> None:
    region = bytearray([0, 1, 254, 255])
    assert _run(1, [memoryview(region)], []) == 0
    assert region == bytearray([1, 2, 255, 0])


def test_fn2_adds_two_to_every_byte_of_every_region() -> None:
    a, b = bytearray(b"\x00" * 5), bytearray(b"\xfe" * 3)
    _run(2, [memoryview(a)], [memoryview(b)])
    assert a == b"\x02" * 5
    assert b == b"\x00" * 3


def test_an_in_out_region_listed_twice_is_incremented_once() -> None:
    region = bytearray(range(16))
    # The RPC server may hand the same memory as two different memoryview objects.
    _run(1, [memoryview(region)], [memoryview(region)[:]])
    assert region == bytearray(range(1, 17))


def test_fn3_leaves_memory_untouched_and_returns_zero() -> None:
    region = bytearray(b"abc")
    assert _run(3, [memoryview(region)], [memoryview(region)]) == 0
    assert region == b"abc"


def test_add_kernel_handles_regions_larger_than_a_chunk_and_empty_ones() -> None:
    big = np.arange(20 * 1024 * 1024, dtype=np.uint64).astype(np.uint8)
    expected = big + np.uint8(1)
    empty = bytearray()
    AddConstant(1)(inputs=[memoryview(big), memoryview(empty)], outputs=[], user=0, deadline=FAR)
    assert np.array_equal(big, expected)


def test_add_kernel_past_its_deadline_raises_kernel_timeout() -> None:
    with pytest.raises(KernelTimeout):
        AddConstant(1)(
            inputs=[memoryview(bytearray(8))], outputs=[], user=0, deadline=time.monotonic() - 1
        )


def test_busy_kernel_raises_kernel_timeout_when_asked_to_outlive_its_deadline() -> None:
    with pytest.raises(KernelTimeout):
        Busy()(inputs=[], outputs=[], user=10_000, deadline=time.monotonic() + 0.01)


def test_noop_kernel_returns_zero() -> None:
    assert NoOp()(inputs=[], outputs=[], user=7, deadline=FAR) == 0


def test_unflashed_binding_serves_exactly_fn_1_2_3() -> None:
    binding = default_registry().bind(TEST_FUNCTIONS)
    assert binding.fn_codes == [1, 2, 3]
    assert binding.lookup(4) is None


def test_plugged_in_kernel_is_bound_to_its_fn_code() -> None:
    registry = default_registry()

    class Train:
        def __call__(self, *, inputs: object, outputs: object, user: int, deadline: float) -> int:
            return 0x10 + user

    registry.register("poet.train", Train)
    kernel = registry.bind({16: "poet.train"}).lookup(16)
    assert kernel is not None
    assert kernel(inputs=[], outputs=[], user=1, deadline=FAR) == 0x11


def test_each_binding_gets_fresh_kernel_instances() -> None:
    registry = default_registry()
    first = registry.bind({1: "test.add1"}).lookup(1)
    second = registry.bind({1: "test.add1"}).lookup(1)
    assert first is not second


def test_binding_an_unknown_kernel_names_it_and_the_known_ones() -> None:
    with pytest.raises(UnknownKernelError) as info:
        default_registry().bind({1: "test.add1", 20: "poet.missing"})
    assert info.value.names == ["poet.missing"]
    assert "test.add1" in str(info.value)


def test_registering_a_name_twice_is_refused_unless_replacing() -> None:
    registry = default_registry()
    with pytest.raises(DuplicateKernelError):
        registry.register("test.add1", NoOp)
    registry.register("test.add1", NoOp, replace=True)
    assert isinstance(registry.bind({1: "test.add1"}).lookup(1), NoOp)


@pytest.mark.parametrize("name", ["", "Upper", "has space", "x" * 64, ".leading"])
def test_invalid_kernel_names_are_refused(name: str) -> None:
    with pytest.raises(RegistryError):
        default_registry().register(name, NoOp)


def test_fn_codes_outside_1_to_127_cannot_be_bound() -> None:
    with pytest.raises(RegistryError):
        default_registry().bind({128: "test.noop"})


def test_shared_kernels_of_one_binding_see_one_context_and_a_new_bind_gets_a_new_one() -> None:
    registry = default_registry()

    class Remember:
        def __init__(self, context: KernelContext) -> None:
            self.context = context

        def __call__(self, *, inputs: object, outputs: object, user: int, deadline: float) -> int:
            self.context.shared["last"] = user
            return 0

    registry.register_shared("core.a", Remember)
    registry.register_shared("core.b", Remember)
    binding = registry.bind({16: "core.a", 17: "core.b"})
    a, b = binding.lookup(16), binding.lookup(17)
    assert isinstance(a, Remember)
    assert isinstance(b, Remember)
    assert a.context is b.context is binding.context
    assert registry.bind({16: "core.a"}).context is not binding.context


def test_re_registering_a_shared_name_as_plain_drops_the_shared_factory() -> None:
    registry = default_registry()
    registry.register_shared("core.a", lambda context: NoOp())
    registry.register("core.a", lambda: AddConstant(1), replace=True)
    assert isinstance(registry.bind({16: "core.a"}).lookup(16), AddConstant)


def test_work_reported_to_a_context_accumulates_and_rejects_bad_units() -> None:
    context = KernelContext()
    context.count_work("training_epochs", 20)
    context.count_work("training_epochs", 5)
    assert context.work() == {"training_epochs": 25}
    with pytest.raises(RegistryError):
        context.count_work("Epochs")
    with pytest.raises(RegistryError):
        context.count_work("epochs", -1)
