"""The compiled extension modules; everything else about the package is in pyproject.toml.

Each C module is one `Extension` line below. Building needs gcc, the Python headers and the
Debian packages listed in hack/ensure-debs.sh (`make` installs them before the venv).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # RoCEv2 bulk paths: ICRC, MIDDLE-run send (UDP GSO) and receive (GRO check and place)
        Extension(
            "naa_runtime.roce._fastpath",
            ["naa_runtime/roce/_fastpath.c"],
            libraries=["isal"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
    ],
)
