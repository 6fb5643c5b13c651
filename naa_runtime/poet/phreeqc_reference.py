"""PHREEQC reference for the barite generator: the same closed-cell chemistry step computed by
IPhreeqc (PyPI `phreeqc`, extra `poet`) with phreeqc.dat and our own RATES for barite and
celestite (phreeqc.dat has none).

Owns the PHREEQC input (RATES, SOLUTION/KINETICS per cell, RUN_CELLS) and reading the results
back as POET's 9 columns in mol. Used to measure the generator's fidelity and as an
out-of-distribution test set; called by the tests and the bench. Slow: tens of cells per
second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from naa_runtime.poet import chemistry
from naa_runtime.poet.dataset import COLUMNS

RATES = """
RATES
Barite
-start
10 rate = 0
20 si_b = SI("Barite")
30 IF (M <= 0) AND (si_b < 0) THEN GOTO 200
40 k_b = 10^(-6.9) * ACT("H+")^0.22 + 10^(-7.9)
50 rate = PARM(1) * k_b * (1 - 10^si_b)
200 SAVE rate * TIME
-end
Celestite
-start
10 rate = 0
20 si_c = SI("Celestite")
30 IF (M <= 0) AND (si_c < 0) THEN GOTO 200
40 k_c = 10^(-5.66) * ACT("H+")^0.109
50 rate = PARM(1) * k_c * (1 - 10^si_c)
200 SAVE rate * TIME
-end
"""

PUNCH = """
SELECTED_OUTPUT 1
-reset false
USER_PUNCH 1
-headings Ba Cl S Sr Barite Celestite
10 w = TOT("water")
20 PUNCH TOT("Ba") * w, TOT("Cl") * w, TOT("S(6)") * w, TOT("Sr") * w
30 PUNCH KIN("Barite"), KIN("Celestite")
"""


class PhreeqcUnavailable(RuntimeError):
    """The optional `phreeqc` package is not installed (`pip install naaice[poet]`)."""


class PhreeqcFailed(RuntimeError):
    """PHREEQC reported errors for the generated input."""


def _engine() -> Any:
    try:
        import phreeqc  # type: ignore[import-untyped]
    except ImportError as exc:
        raise PhreeqcUnavailable(
            "the PHREEQC reference needs the optional extra: pip install 'naaice[poet]'"
        ) from exc
    engine = phreeqc.Phreeqc()
    if engine.LoadBuiltInDatabase("phreeqc.dat"):
        raise PhreeqcFailed(engine.GetErrorString())
    return engine


def reference_step(
    x: np.ndarray, *, dt: float, kinetics: chemistry.Kinetics | None = None
) -> np.ndarray:
    """PHREEQC's result of one closed-cell chemistry step for every row of `x` (POET's 9
    columns, mol per kg water); H, O and Charge are carried over from `x`."""
    kinetics = kinetics or chemistry.Kinetics()
    engine = _engine()
    col = {name: i for i, name in enumerate(COLUMNS)}
    lines = [RATES]
    for n, row in enumerate(x, start=1):
        lines.append(
            f"SOLUTION {n}\n units mol/kgw\n pH 7\n temp 25\n"
            f" Ba {max(row[col['Ba']], 1e-20):.17g}\n Cl {max(row[col['Cl']], 1e-20):.17g}\n"
            f" S(6) {max(row[col['S']], 1e-20):.17g}\n Sr {max(row[col['Sr']], 1e-20):.17g}\n"
            f"KINETICS {n}\n"
            f"Barite\n -m {row[col['Barite']]:.17g}\n -parms {kinetics.surface_barite}\n"
            f" -tol 1e-9\n"
            f"Celestite\n -m {row[col['Celestite']]:.17g}\n"
            f" -parms {kinetics.surface_celestite}\n -tol 1e-9\n"
        )
    lines.append("END\n")
    # Define the cells first, then punch only what RUN_CELLS computes.
    run = f"{PUNCH}\nRUN_CELLS\n -cells 1-{len(x)}\n -time_step {dt}\nEND\n"
    for text in ("\n".join(lines), run):
        if engine.RunString(text):
            raise PhreeqcFailed(engine.GetErrorString())
    table = engine.GetSelectedOutput()
    out = np.array(x, dtype=np.float64, copy=True)
    for name in ("Ba", "Cl", "S", "Sr", "Barite", "Celestite"):
        values = np.asarray(table[name], dtype=np.float64)
        if values.shape[0] != len(x):
            raise PhreeqcFailed(f"PHREEQC returned {values.shape[0]} rows for {len(x)} cells")
        out[:, col[name]] = values
    return out
