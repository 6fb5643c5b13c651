"""Resource estimate of a training core for a network graph on a target FPGA board.

Owns the board database (public resource counts) and the cost model documented in
docs/training.md ("Resource estimator"): per layer, DSP/LUT/FF from the number format and the
number of multiply–accumulate units (parallelism = MACs / reuse factor, three GEMMs per layer for
forward, error back-propagation and weight gradient), BRAM/URAM for weights, gradients and
optimizer state; the achievable clock and samples/s follow. Pure functions; called by the
training kernels (configure), `naaice train estimate` and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from naa_runtime.training.graph import NetworkGraph


@dataclass(frozen=True, slots=True)
class Board:
    """A board's FPGA resources (vendor data sheets) and its kernel clock ceiling."""

    model: str
    vendor: str
    lut: int
    ff: int
    dsp: int
    bram: int  # 36 Kib blocks
    uram: int  # 288 Kib blocks
    memory_bytes: int  # off-chip HBM/DDR that holds the epoch's training data
    clock_mhz: float  # default kernel clock of the platform


BOARDS: dict[str, Board] = {
    # AMD Alveo data sheets (DS978 / DS963 / DS962) and the Kria K26 SOM data sheet (DS987).
    "u55c": Board("u55c", "AMD", 1_303_680, 2_607_360, 9_024, 2_016, 960, 16 << 30, 300.0),
    "u280": Board("u280", "AMD", 1_303_680, 2_607_360, 9_024, 2_016, 960, 40 << 30, 300.0),
    "u250": Board("u250", "AMD", 1_728_000, 3_456_000, 12_288, 2_688, 1_280, 64 << 30, 300.0),
    "u50": Board("u50", "AMD", 872_000, 1_743_000, 5_952, 1_344, 640, 8 << 30, 300.0),
    "kv260": Board("kv260", "AMD", 117_120, 234_240, 1_248, 144, 64, 4 << 30, 250.0),
}

# Cost of one multiply–accumulate unit per number format: (DSP48E2, LUT, FF). Floating point
# follows the Vitis HLS operator defaults (fmul 3 DSP + fadd 2 DSP; dmul 11 + dadd 3); fixed
# point packs one 18×27 product per DSP (two 8-bit products per DSP).
MAC_COST: dict[str, tuple[float, int, int]] = {
    "float64": (14.0, 1_100, 1_800),
    "float32": (5.0, 420, 700),
    "fixed16": (1.0, 30, 60),
    "fixed8": (0.5, 20, 40),
}
BITS: dict[str, int] = {"float64": 64, "float32": 32, "fixed16": 16, "fixed8": 8}
SHELL_FRACTION = 0.2  # RoCEv2 stack, memory controllers and the RPC shell of the NAA
GEMMS_PER_LAYER = 3  # forward, back-propagated error, weight gradient
BRAM_BITS = 36 * 1024
URAM_BITS = 288 * 1024
URAM_THRESHOLD_BITS = 1 << 20  # buffers of 1 Mibit or more go to UltraRAM
LUTRAM_MAX_BITS = 1024  # a bank this small lives in LUTRAM (64 bits per LUT)
CONTROL_LUT = 5_000  # epoch loader, loss, optimizer control per core
CONTROL_FF = 8_000
DERATE_FROM = 0.6  # routing congestion costs clock above this utilization
DERATE_AT_FULL = 0.7  # clock factor at 100 % utilization
OPTIMIZER_COPIES = {"adam": 4, "sgd": 3}  # weights + gradients + (m, v) or momentum


class EstimatorError(ValueError):
    """Bad estimator input (unknown board or number format)."""


class ModelDoesNotFit(EstimatorError):
    """The model needs more of some resource than the board has; the message has the numbers."""

    def __init__(self, message: str, *, shortfalls: dict[str, tuple[int, int]]) -> None:
        super().__init__(message)
        self.shortfalls = shortfalls


@dataclass(frozen=True, slots=True)
class LayerEstimate:
    index: int
    macs: int
    parallelism: int  # MAC units per GEMM
    cycles_per_sample: int
    dsp: int
    lut: int
    ff: int
    bram: int
    uram: int


@dataclass(frozen=True, slots=True)
class Estimate:
    board: Board
    number_format: str
    reuse_factor: int
    layers: tuple[LayerEstimate, ...]
    dsp: int
    lut: int
    ff: int
    bram: int
    uram: int
    available: dict[str, int]
    utilization: dict[str, float]
    clock_mhz: float
    cycles_per_sample: int
    samples_per_second: float

    def to_json(self) -> dict[str, object]:
        return {
            "board": self.board.model,
            "numberFormat": self.number_format,
            "reuseFactor": self.reuse_factor,
            "resources": {
                "dsp": self.dsp,
                "lut": self.lut,
                "ff": self.ff,
                "bram": self.bram,
                "uram": self.uram,
            },
            "available": self.available,
            "utilization": self.utilization,
            "clockMHz": self.clock_mhz,
            "cyclesPerSample": self.cycles_per_sample,
            "samplesPerSecond": self.samples_per_second,
            "layers": [
                {
                    "macs": layer.macs,
                    "parallelism": layer.parallelism,
                    "dsp": layer.dsp,
                    "lut": layer.lut,
                    "ff": layer.ff,
                    "bram": layer.bram,
                    "uram": layer.uram,
                }
                for layer in self.layers
            ],
        }


def board(name: str) -> Board:
    try:
        return BOARDS[name.lower()]
    except KeyError:
        raise EstimatorError(
            f"unknown board {name!r}; known boards: {', '.join(sorted(BOARDS))}"
        ) from None


def _memory_blocks(bits: int, banks: int) -> tuple[int, int, int]:
    """(BRAM, URAM, LUT) to hold `bits` split over `banks` independently read banks."""
    per_bank = math.ceil(bits / banks)
    if per_bank <= LUTRAM_MAX_BITS:
        return 0, 0, banks * math.ceil(per_bank / 64)
    if bits >= URAM_THRESHOLD_BITS:
        return 0, banks * math.ceil(per_bank / URAM_BITS), 0
    return banks * math.ceil(per_bank / BRAM_BITS), 0, 0


def _layer(
    *, index: int, fan_in: int, units: int, reuse: int, fmt: str, copies: int
) -> LayerEstimate:
    macs = fan_in * units
    parallel = math.ceil(macs / reuse)
    dsp_mac, lut_mac, ff_mac = MAC_COST[fmt]
    units_total = GEMMS_PER_LAYER * parallel
    params_bits = (macs + units) * BITS[fmt] * copies
    bram, uram, lutram = _memory_blocks(params_bits, min(parallel, macs + units))
    return LayerEstimate(
        index=index,
        macs=macs,
        parallelism=parallel,
        cycles_per_sample=math.ceil(macs / parallel),
        dsp=math.ceil(units_total * dsp_mac),
        lut=units_total * lut_mac + lutram,
        ff=units_total * ff_mac,
        bram=bram,
        uram=uram,
    )


def _available(target: Board) -> dict[str, int]:
    keep = 1.0 - SHELL_FRACTION
    return {
        "dsp": int(target.dsp * keep),
        "lut": int(target.lut * keep),
        "ff": int(target.ff * keep),
        "bram": int(target.bram * keep),
        "uram": int(target.uram * keep),
    }


def estimate_with_reuse(
    *,
    graph: NetworkGraph,
    target: Board,
    reuse_factor: int,
    number_format: str | None = None,
    optimizer: str = "adam",
    clock_mhz: float | None = None,
) -> Estimate:
    """The estimate at one reuse factor (cycles each MAC unit is reused per sample).

    Raises ModelDoesNotFit naming every resource that is short, needed vs available."""
    fmt = number_format or graph.dtype
    if fmt not in MAC_COST:
        raise EstimatorError(f"unknown number format {fmt!r}; choose one of {sorted(MAC_COST)}")
    if optimizer not in OPTIMIZER_COPIES:
        raise EstimatorError(f"unknown optimizer {optimizer!r}; choose adam or sgd")
    if reuse_factor < 1:
        raise EstimatorError(f"reuse factor must be ≥ 1, got {reuse_factor}")
    widths = graph.widths
    layers = tuple(
        _layer(
            index=i,
            fan_in=widths[i],
            units=widths[i + 1],
            reuse=reuse_factor,
            fmt=fmt,
            copies=OPTIMIZER_COPIES[optimizer],
        )
        for i in range(len(graph.layers))
    )
    totals = {
        "dsp": sum(layer.dsp for layer in layers),
        "lut": sum(layer.lut for layer in layers) + CONTROL_LUT,
        "ff": sum(layer.ff for layer in layers) + CONTROL_FF,
        "bram": sum(layer.bram for layer in layers),
        "uram": sum(layer.uram for layer in layers),
    }
    available = _available(target)
    short = {k: (totals[k], available[k]) for k in totals if totals[k] > available[k]}
    if short:
        detail = "; ".join(
            f"{k.upper()}: needs {need:,}, {target.model} has {have:,} available "
            f"({getattr(target, k):,} minus the {SHELL_FRACTION:.0%} shell reservation)"
            for k, (need, have) in short.items()
        )
        raise ModelDoesNotFit(
            f"model {graph.name!r} ({fmt}, reuse factor {reuse_factor}) does not fit "
            f"{target.model}: {detail}. Raise the reuse factor, use a narrower number format "
            "or a smaller model.",
            shortfalls=short,
        )
    util = {k: totals[k] / available[k] if available[k] else 0.0 for k in totals}
    worst = max(util["dsp"], util["lut"], util["ff"])
    f_max = clock_mhz or target.clock_mhz
    derate = 1.0
    if worst > DERATE_FROM:
        derate = 1.0 - (1.0 - DERATE_AT_FULL) * (worst - DERATE_FROM) / (1.0 - DERATE_FROM)
    clock = f_max * derate
    cycles = max(layer.cycles_per_sample for layer in layers)
    return Estimate(
        board=target,
        number_format=fmt,
        reuse_factor=reuse_factor,
        layers=layers,
        available=available,
        utilization={k: round(v, 4) for k, v in util.items()},
        clock_mhz=round(clock, 3),
        cycles_per_sample=cycles,
        samples_per_second=clock * 1e6 / cycles,
        **totals,
    )


def estimate(
    *,
    graph: NetworkGraph,
    target: Board,
    reuse_factor: int | None = None,
    number_format: str | None = None,
    optimizer: str = "adam",
    clock_mhz: float | None = None,
) -> Estimate:
    """The estimate at `reuse_factor`, or at the smallest power of two that fits.

    Raises ModelDoesNotFit when the given reuse factor (or even full reuse, one MAC unit per
    GEMM) does not fit; the message carries the numbers of the last attempt."""
    if reuse_factor is not None:
        return estimate_with_reuse(
            graph=graph,
            target=target,
            reuse_factor=reuse_factor,
            number_format=number_format,
            optimizer=optimizer,
            clock_mhz=clock_mhz,
        )
    largest = max(graph.macs_per_layer)
    reuse = 1
    while True:
        try:
            return estimate_with_reuse(
                graph=graph,
                target=target,
                reuse_factor=reuse,
                number_format=number_format,
                optimizer=optimizer,
                clock_mhz=clock_mhz,
            )
        except ModelDoesNotFit:
            if reuse >= largest:
                raise
            reuse = min(reuse * 2, largest)
