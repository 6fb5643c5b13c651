"""`naaice runtime serve` configuration from the environment and kernel plug-in modules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from naa_runtime.bitstream import digest_of
from naa_runtime.client import Naa, reset_naa_spec
from tests.support.naa import NAAStartError, SoftwareNAAFactory, host_side_address

PLUGIN = textwrap.dedent(
    """
    import numpy as np
    from naa_runtime.kernels import register

    class Reverse:
        \"\"\"Writes input 0 reversed into output 0; counts its calls (kernel state).\"\"\"

        def __init__(self):
            self.calls = 0

        def __call__(self, *, inputs, outputs, user, deadline):
            self.calls += 1
            src = np.frombuffer(inputs[0], dtype=np.uint8)
            np.frombuffer(outputs[0], dtype=np.uint8)[:] = src[::-1]
            return 0x10 + self.calls

    register("example.reverse", Reverse)
    """
)


def test_every_flag_has_an_env_twin_and_the_token_may_come_from_the_env(
    software_naa: SoftwareNAAFactory,
) -> None:
    naa = software_naa(
        token_via_env=True,
        env={"NAAICE_BOARD_MODEL": "alveo-u280-emulated", "NAAICE_MEMORY_BYTES": "1048576"},
    )
    status, identity = naa.get("/v1/identity")
    assert status == 200
    assert identity["board"]["model"] == "alveo-u280-emulated"
    assert identity["resources"]["memoryBytes"] == 1048576
    assert naa.get("/v1/identity", token=None)[0] == 401


def test_a_plugin_module_registers_a_kernel_a_bitstream_binds_and_scrub_resets(
    software_naa: SoftwareNAAFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "reverse_kernels.py").write_text(PLUGIN)
    naa = software_naa(
        flash_seconds=0,
        extra_args=("--kernel-module", "reverse_kernels"),
        env={"PYTHONPATH": str(plugins)},
    )
    doc = (
        b"kind: SoftwareBitstream\nfunctions: [{name: rev, fnCode: 16, kernel: example.reverse}]\n"
    )
    (tmp_path / "rev.yaml").write_bytes(doc)
    flash = {"name": "rev", "digest": digest_of(doc), "artifact": (tmp_path / "rev.yaml").as_uri()}
    assert naa.post("/v1/flash", flash)[0] == 202
    assert naa.wait_for_state("Ready")["functions"] == [16]

    monkeypatch.setenv("NAA_SPEC", f"{naa.address}::16:1")
    reset_naa_spec()
    try:
        src = np.arange(10, dtype=np.uint8)
        out = np.zeros(10, dtype=np.uint8)

        def call() -> int:
            with Naa(16, inputs=[src], outputs=[out], local_address=host_side_address()) as rpc:
                return rpc()

        assert call() == 0x11
        assert np.array_equal(out, src[::-1])
        assert call() == 0x12
        # Scrub replaces the kernel instance: its call counter starts again.
        assert naa.post("/v1/scrub")[0] == 200
        assert call() == 0x11
    finally:
        reset_naa_spec()


def test_an_unknown_kernel_module_stops_the_runtime_with_a_clear_error(
    software_naa: SoftwareNAAFactory,
) -> None:
    with pytest.raises(NAAStartError, match="no_such_kernels"):
        software_naa(extra_args=("--kernel-module", "no_such_kernels"))
