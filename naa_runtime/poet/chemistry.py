"""Closed-cell barite/celestite kinetics over one time step, vectorised over cells.

Owns the chemistry of POET's barite benchmark as docs/training.md describes it: ion pairing
(BaSO4°, SrSO4°), WATEQ Debye–Hückel activities, transition-state rate laws for barite and
celestite, and a backward-Euler integration whose unknowns are the two reaction extents per
cell, so every element total is conserved by construction. Called by `naa_runtime.poet.generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

# phreeqc.dat thermodynamics (25 °C).
LOG_KSP_BARITE = -9.97
LOG_KSP_CELESTITE = -6.63
LOG_K_BASO4 = 2.7
LOG_K_SRSO4 = 2.29
# WATEQ Debye–Hückel: log γ = −A z² √I / (1 + B a √I) + b I, with phreeqc.dat ion sizes.
DH_A = 0.5085
DH_B = 0.3281
ION_BA = (4.0, 0.153)
ION_SR = (5.26, 0.121)
ION_SO4 = (5.0, -0.04)
# Palandri & Kharaka (2004) rate constants at pH 7 (a(H+) = 1e-7), mol/m²/s.
PH = 7.0
K_BARITE = 10.0**-6.9 * (10.0**-PH) ** 0.22 + 10.0**-7.9
K_CELESTITE = 10.0**-5.66 * (10.0**-PH) ** 0.109


@dataclass(frozen=True, slots=True)
class Kinetics:
    """Reactive surfaces and the substep schedule of the backward-Euler integration."""

    surface_barite: float = 50.0  # m²
    surface_celestite: float = 10.0  # m²
    substeps: int = 6
    first_substep: float = 1e-2  # s; later substeps grow geometrically to fill dt
    newton_rtol: float = 1e-10
    newton_atol: float = 1e-16  # mol
    max_newton: int = 60


def _log_gamma(sqrt_i: F64, ion: tuple[float, float], z2: float) -> F64:
    a, b = ion
    result: F64 = -DH_A * z2 * sqrt_i / (1.0 + DH_B * a * sqrt_i) + b * sqrt_i * sqrt_i
    return result


def substep_lengths(dt: float, kinetics: Kinetics) -> list[float]:
    """Geometric substeps h0·rᵏ that add up to `dt` exactly (r found by bisection)."""
    n, h0 = kinetics.substeps, min(kinetics.first_substep, dt / kinetics.substeps)
    if n == 1:
        return [dt]
    lo, hi = 1.0, 10.0
    while h0 * (hi**n - 1) / (hi - 1) < dt:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        total = h0 * n if mid == 1.0 else h0 * (mid**n - 1) / (mid - 1)
        lo, hi = (mid, hi) if total < dt else (lo, mid)
    steps = [h0 * lo**k for k in range(n)]
    steps[-1] = dt - math.fsum(steps[:-1])
    return steps


@dataclass(slots=True)
class Speciation:
    """Free sulfate and the saturation ratios of both minerals for a set of cells."""

    so4_free: F64
    sr_barite: F64
    sr_celestite: F64


def speciate(*, ba: F64, sr: F64, s: F64, cl: F64, so4_guess: F64 | None = None) -> Speciation:
    """Solve the ion-pair mass balance for free SO4 (activities iterated with it)."""
    _, _, x, sat_b, sat_c, *_ = _speciate_parts(ba, sr, s, cl, so4_guess)
    return Speciation(so4_free=x, sr_barite=sat_b, sr_celestite=sat_c)


def _speciate_parts(
    ba: F64, sr: F64, s: F64, cl: F64, x0: F64 | None
) -> tuple[F64, F64, F64, F64, F64, F64, F64, F64]:
    """Free SO4 x with γ lagged one iteration; returns the pieces the Jacobian needs.

    Returns (k1, k2, x, SR_barite, SR_celestite, gbs, gss, dg_dx) where k1, k2 are the
    γ-corrected pair constants and gbs = γBa·γSO4, gss = γSr·γSO4.
    """
    x = np.minimum(s, 1e-3) if x0 is None else np.clip(x0, 1e-30, None)
    x = np.maximum(x, 1e-30)
    kb0, ks0 = 10.0**LOG_K_BASO4, 10.0**LOG_K_SRSO4
    for _ in range(40):
        ba_f = ba / (1.0 + kb0 * x)
        sr_f = sr / (1.0 + ks0 * x)
        ionic = 0.5 * (4.0 * (ba_f + sr_f + x) + cl)
        sq = np.sqrt(ionic)
        lg_so4 = _log_gamma(sq, ION_SO4, 4.0)
        gbs = np.power(10.0, _log_gamma(sq, ION_BA, 4.0) + lg_so4)
        gss = np.power(10.0, _log_gamma(sq, ION_SR, 4.0) + lg_so4)
        k1, k2 = kb0 * gbs, ks0 * gss
        d1, d2 = 1.0 + k1 * x, 1.0 + k2 * x
        g = x + ba * k1 * x / d1 + sr * k2 * x / d2 - s
        dg = 1.0 + ba * k1 / (d1 * d1) + sr * k2 / (d2 * d2)
        x_new = np.maximum(x - g / dg, 0.1 * x)
        done = bool(np.all(np.abs(x_new - x) <= 1e-11 * x + 1e-300))
        x = x_new
        if done:
            break
    d1, d2 = 1.0 + k1 * x, 1.0 + k2 * x
    sat_b = gbs * ba * x / d1 / 10.0**LOG_KSP_BARITE
    sat_c = gss * sr * x / d2 / 10.0**LOG_KSP_CELESTITE
    dg = 1.0 + ba * k1 / (d1 * d1) + sr * k2 / (d2 * d2)
    return k1, k2, x, sat_b, sat_c, gbs, gss, dg


def celestite_saturation() -> float:
    """Sr = S(6) (mol/kgw) of pure water at celestite saturation under this model."""
    lo, hi = 1e-6, 1e-2
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        arr = np.array([mid])
        sat = speciate(ba=np.zeros(1), sr=arr, s=arr, cl=np.zeros(1)).sr_celestite[0]
        lo, hi = (mid, hi) if sat < 1.0 else (lo, mid)
    return math.sqrt(lo * hi)


class ChemistryNotConverged(RuntimeError):
    """The backward-Euler Newton iteration did not meet its tolerance."""


def react(
    *,
    ba: F64,
    sr: F64,
    s: F64,
    cl: F64,
    barite: F64,
    celestite: F64,
    dt: float,
    kinetics: Kinetics,
) -> tuple[F64, F64]:
    """Barite precipitated (ξb) and celestite dissolved (ξc) in each closed cell over `dt`.

    Each substep solves ξ − h·R(state + ξ) = 0 for both extents with a 2×2 Newton whose
    Jacobian is analytic in the extents (activity coefficients lagged), iterated to a residual
    tolerance; iterates are clipped so no amount goes negative.
    """
    xi_b = np.zeros_like(ba)
    xi_c = np.zeros_like(ba)
    so4 = None
    kb, kc = kinetics.surface_barite * K_BARITE, kinetics.surface_celestite * K_CELESTITE
    for h in substep_lengths(dt, kinetics):
        b0, c0 = ba - xi_b, sr + xi_c
        s0 = s + xi_c - xi_b
        bar0, cel0 = barite + xi_b, celestite - xi_c
        db = np.zeros_like(ba)
        dc = np.zeros_like(ba)
        for _ in range(kinetics.max_newton):
            bb, cc, ss = b0 - db, c0 + dc, s0 + dc - db
            k1, k2, x, sat_b, sat_c, gbs, gss, dg = _speciate_parts(bb, cc, ss, cl, so4)
            so4 = x
            # Rates: barite precipitation and celestite dissolution, both mol/s.
            present_b = (bar0 + db > 0.0) | (sat_b > 1.0)
            present_c = (cel0 - dc > 0.0) | (sat_c < 1.0)
            rb = np.where(present_b, kb * (sat_b - 1.0), 0.0)
            rc = np.where(present_c, kc * (1.0 - sat_c), 0.0)
            f1 = db - h * rb
            f2 = dc - h * rc
            # d x / d(db, dc) through the pair mass balance g(x; Ba, Sr, S) = 0.
            d1, d2 = 1.0 + k1 * x, 1.0 + k2 * x
            gba, gsr = k1 * x / d1, k2 * x / d2
            dx_db = (gba - 1.0) / dg  # Ba −1, S −1 per unit db
            dx_dc = (1.0 - gsr) / dg  # Sr +1, S +1 per unit dc
            # SR_b ∝ Ba·x/(1+k1 x), SR_c ∝ Sr·x/(1+k2 x).
            ib = gbs / 10.0**LOG_KSP_BARITE
            ic = gss / 10.0**LOG_KSP_CELESTITE
            dsb_dx = ib * bb / (d1 * d1)
            dsc_dx = ic * cc / (d2 * d2)
            dsb_db = -ib * x / d1 + dsb_dx * dx_db
            dsb_dc = dsb_dx * dx_dc
            dsc_db = dsc_dx * dx_db
            dsc_dc = ic * x / d2 + dsc_dx * dx_dc
            j11 = 1.0 - h * np.where(present_b, kb * dsb_db, 0.0)
            j12 = -h * np.where(present_b, kb * dsb_dc, 0.0)
            j21 = -h * np.where(present_c, -kc * dsc_db, 0.0)
            j22 = 1.0 - h * np.where(present_c, -kc * dsc_dc, 0.0)
            det = j11 * j22 - j12 * j21
            step_b = (f1 * j22 - f2 * j12) / det
            step_c = (j11 * f2 - j21 * f1) / det
            db_new = db - step_b
            dc_new = dc - step_c
            converged = bool(
                np.all(
                    np.abs(step_b) + np.abs(step_c)
                    <= kinetics.newton_rtol * (np.abs(db_new) + np.abs(dc_new))
                    + kinetics.newton_atol
                )
            )
            # Keep every amount non-negative: Ba, Barite, Sr, Celestite and S.
            db_new = np.clip(db_new, -bar0, b0 * (1.0 - 1e-12))
            dc_new = np.clip(dc_new, -c0 * (1.0 - 1e-12), cel0)
            s_new = s0 + dc_new - db_new
            short = s_new < 0.0
            if np.any(short):
                # Too much barite for the sulfate: take only what S allows.
                db_new = np.where(short, (s0 + dc_new) * (1.0 - 1e-12), db_new)
            db, dc = db_new, dc_new
            if converged:
                break
        else:
            raise ChemistryNotConverged(
                f"barite/celestite Newton did not converge in {kinetics.max_newton} "
                f"iterations on a {h:.3g} s substep; raise Kinetics.substeps"
            )
        xi_b = xi_b + db
        xi_c = xi_c + dc
    return xi_b, xi_c
