"""Benchmark of naaice's training core against Keras 3 (the framework of NAAICE's GPU baseline)
and, when installed, PyTorch, all on this machine's CPU, in one run with the same model
(POET's 9-9-48-96-24-9, linear output), data (the CI-sized barite set, min–max scaled), loss
(Huber δ=0.05 + λ·mass balance), optimiser (Adam 1e-3, ε 1e-7) and batch size.

Figures: training samples/s at batch 32 and 1280 (median of --repeats timed fits after a
warm-up fit that compiles/allocates); the held-out MSE after --epochs epochs from the same
initial weights and the same Fisher–Yates batch order; and the time of one POET-style call
(2500 rows × 20 epochs, batch 1280) end to end through a real software NAA over UDP (fn 16),
against the same call in-process and under Keras. Floors (issue 4): ≥ 1.5× Keras at batch 1280,
≥ 3× at batch 32, held-out MSE within 5 % of Keras. Writes bench/out/training-loss.png.

Bench-only dependencies: `pip install -r requirements-bench.lock` (keras + jax[cpu]).
Usage: .venv/bin/python bench/training.py [--repeats 5] [--epochs 20] [--skip-naa]"""

from __future__ import annotations

import os
import sys

if "OPENBLAS_CORETYPE" in os.environ and not os.environ.get("NAAICE_BENCH_REEXEC"):
    # Set on some machines for old OpenBLAS builds; it slows a current NumPy. This process only.
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    env["NAAICE_BENCH_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
if "--keras-backend" in sys.argv:
    os.environ["KERAS_BACKEND"] = sys.argv[sys.argv.index("--keras-backend") + 1]
else:
    # NAAICE's GPU baseline ran Keras on TensorFlow; use it when installed, else JAX.
    import importlib.util

    has_tf = importlib.util.find_spec("tensorflow") is not None
    os.environ.setdefault("KERAS_BACKEND", "tensorflow" if has_tf else "jax")

import argparse
import json
import secrets
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from naa_runtime.apps import train_poet as app
from naa_runtime.training import wire
from naa_runtime.training.graph import poet_m0
from naa_runtime.training.loader import fisher_yates
from naa_runtime.training.loss import mass_balance_matrix
from naa_runtime.training.network import Network
from naa_runtime.training.trainer import HyperParameters, Trainer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DELTA, LAMBDA, LR = 0.05, 1.0, 1e-3
console = Console()


def data() -> tuple[np.ndarray, ...]:
    prepared = app.prepare(app.RunConfig(preset="ci"))
    x, y = prepared.scaled(prepared.train)
    tx, ty = prepared.scaled(prepared.test)
    m = mass_balance_matrix(
        stoichiometry=prepared.data.stoichiometry,
        span=prepared.bounds.span,
        element_scale=prepared.element_scale,
    ).astype(np.float32)
    return x, y, tx, ty, m


# --- naaice ---------------------------------------------------------------------------------


def naaice_trainer(batch: int, m: np.ndarray, seed: int = 0) -> Trainer:
    hyper = HyperParameters(batch_size=batch, huber_delta=DELTA, mb_lambda=LAMBDA, seed=seed)
    return Trainer(poet_m0(), hyper, mb_matrix=m)


def time_naaice(
    x: np.ndarray, y: np.ndarray, m: np.ndarray, *, batch: int, epochs: int, repeats: int
) -> float:
    t = naaice_trainer(batch, m)
    t.set_data(x, y)
    t.fit(1)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        t.fit(epochs)
        runs.append(time.perf_counter() - start)
    return len(x) * epochs / statistics.median(runs)


# --- Keras ----------------------------------------------------------------------------------


def keras_model(m: np.ndarray, init: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    import keras
    from keras import ops

    model = keras.Sequential(
        [keras.Input((9,))]
        + [keras.layers.Dense(u, activation="relu") for u in (9, 48, 96, 24)]
        + [keras.layers.Dense(9, activation="linear")]
    )
    model.set_weights([a for pair in init for a in pair])
    mm = ops.convert_to_tensor(m)

    def huber_mass_balance(y_true: Any, y_pred: Any) -> Any:
        d = y_pred - y_true
        q = ops.clip(d, -DELTA, DELTA)
        huber = ops.mean(q * (d - 0.5 * q), axis=-1)
        r = ops.matmul(d, mm)
        return huber + LAMBDA * ops.mean(r * r, axis=-1)

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LR, epsilon=1e-7), loss=huber_mass_balance
    )
    return model


def time_keras(
    x: np.ndarray, y: np.ndarray, m: np.ndarray, *, batch: int, epochs: int, repeats: int
) -> float:
    model = keras_model(m, Network(poet_m0()).get_layers())
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0)
        runs.append(time.perf_counter() - start)
    return len(x) * epochs / statistics.median(runs)


# --- PyTorch (optional) ---------------------------------------------------------------------


def torch_available() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return (
            "not installed: PyPI's Linux torch wheel pulls ~3 GB of CUDA libraries and PyPI has "
            "no CPU-only build, so it is not a bench dependency"
        )
    return None


def time_torch(
    x: np.ndarray, y: np.ndarray, m: np.ndarray, *, batch: int, epochs: int, repeats: int
) -> float:
    import torch

    torch.manual_seed(0)
    layers: list[Any] = []
    widths = (9, 9, 48, 96, 24, 9)
    for i in range(5):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i < 4:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=LR, eps=1e-7)
    tx, ty, tm = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)

    def epoch() -> None:
        perm = torch.randperm(len(tx))
        for s in range(0, len(tx), batch):
            idx = perm[s : s + batch]
            d = net(tx[idx]) - ty[idx]
            q = d.clamp(-DELTA, DELTA)
            r = d @ tm
            loss = (q * (d - 0.5 * q)).mean() + LAMBDA * (r * r).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    epoch()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(epochs):
            epoch()
        runs.append(time.perf_counter() - start)
    return len(x) * epochs / statistics.median(runs)


# --- accuracy: same init, same batch order ---------------------------------------------------


def accuracy(
    x: np.ndarray,
    y: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    m: np.ndarray,
    *,
    epochs: int,
    batch: int,
) -> dict[str, Any]:
    init = Network(poet_m0(), seed=0).get_layers()
    t = naaice_trainer(batch, m, seed=0)
    t.network.set_layers(init)
    t.set_data(x, y)
    ours = t.fit(epochs)
    model = keras_model(m, init)
    theirs = []
    for e in range(epochs):  # feed Keras our Fisher–Yates order so both see the same batches
        order = fisher_yates(n=len(x), seed=0, epoch=e)
        h = model.fit(x[order], y[order], batch_size=batch, epochs=1, shuffle=False, verbose=0)
        theirs.append(float(h.history["loss"][0]))
    mse_ours = float(np.mean((t.predict(tx) - ty) ** 2))
    mse_keras = float(np.mean((np.asarray(model.predict(tx, verbose=0)) - ty) ** 2))
    return {
        "naaice": ours,
        "keras": theirs,
        "mse_naaice": mse_ours,
        "mse_keras": mse_keras,
        "trainer": t,
    }


def phreeqc_fidelity(trainer: Trainer, cells: int) -> str:
    """The generator and the trained surrogate against PHREEQC on reacting cells of the CI
    set's held-out iterations (an out-of-distribution check: PHREEQC's chemistry, not ours)."""
    import importlib.util

    if importlib.util.find_spec("phreeqc") is None:
        return "PHREEQC reference: skipped — the 'poet' extra (PyPI phreeqc) is not installed"
    from naa_runtime.poet.phreeqc_reference import reference_step

    prepared = app.prepare(app.RunConfig(preset="ci"))
    split = prepared.test
    change = np.abs(split.y[:, 8] - split.x[:, 8])
    reacting = np.flatnonzero(change > 1e-6)
    pick = reacting[np.linspace(0, reacting.size - 1, min(cells, reacting.size)).astype(int)]
    x = split.x[pick]
    start = time.perf_counter()
    ref = reference_step(x, dt=200.0)
    seconds = time.perf_counter() - start
    gen = split.y[pick]
    sur = prepared.bounds.unscale(trainer.predict(prepared.bounds.scale(x)).astype(np.float64))
    parts = []
    for name, j in (("Barite", 7), ("Celestite", 8), ("Sr", 6)):
        d_ref = ref[:, j] - x[:, j]
        err_gen = np.median(np.abs(gen[:, j] - x[:, j] - d_ref) / np.abs(d_ref))
        parts.append(f"{name} Δ median rel. error {err_gen:.1%}")
    mse_gen = float(np.mean((prepared.bounds.scale(gen) - prepared.bounds.scale(ref)) ** 2))
    mse_sur = float(np.mean((prepared.bounds.scale(sur) - prepared.bounds.scale(ref)) ** 2))
    return (
        f"PHREEQC reference on {len(x)} reacting held-out cells ({len(x) / seconds:.0f} "
        f"cell-steps/s): generator vs PHREEQC: {', '.join(parts)}; scaled MSE against PHREEQC "
        f"targets: generator {mse_gen:.3g}, naaice surrogate {mse_sur:.3g}"
    )


# --- one POET call through a software NAA ------------------------------------------------------


def poet_call_through_naa(x: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, float]:
    from naa_runtime.bitstream import digest_of
    from naa_runtime.client import Naa, reset_naa_spec

    artifact = ROOT / "examples" / "bitstreams" / "training-core.yaml"
    tmp = Path(tempfile.mkdtemp(prefix="naaice-bench-"))
    token = secrets.token_urlsafe(16)
    (tmp / "token").write_text(token)
    address, mgmt = "127.0.0.91", 9091
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "naaice"),
            "runtime",
            "serve",
            "--name",
            "bench-naa",
            "--address",
            address,
            "--mgmt-port",
            str(mgmt),
            "--token-file",
            str(tmp / "token"),
            "--flash-seconds",
            "0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "naa.log", "wb"),  # noqa: SIM115
    )

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"http://{address}:{mgmt}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call("GET", "/v1/health")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        f"software NAA did not start: {(tmp / 'naa.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        blob = artifact.read_bytes()
        call(
            "POST",
            "/v1/flash",
            {"name": "training-core", "digest": digest_of(blob), "artifact": artifact.as_uri()},
        )
        while call("GET", "/v1/health")["state"] != "Ready":
            time.sleep(0.1)
        os.environ["NAA_SPEC"] = f"{address}::16:3"
        reset_naa_spec()
        net = Network(poet_m0(), dtype=np.float64)
        model = bytearray(wire.encode_poet_model(net.get_layers()))
        inputs = bytearray(wire.encode_columns(x[:2500]))
        targets = bytearray(wire.encode_columns(y[:2500]))
        out = bytearray(len(model))
        runs = []
        with Naa(
            16, inputs=[model, inputs, targets], outputs=[out], local_address="127.1.0.91"
        ) as naa:
            naa(user=(1280 << 8) | 20)  # warm-up: allocation, first connection
            for _ in range(repeats):
                start = time.perf_counter()
                rc = naa(user=(1280 << 8) | 20)
                runs.append(time.perf_counter() - start)
                if rc:
                    raise RuntimeError(f"poet.train returned {rc}")
        return {
            "naa": statistics.median(runs),
            "bytes": len(model) + len(inputs) + len(targets) + len(out),
        }
    finally:
        proc.terminate()
        proc.wait(10)


def poet_call_local(x: np.ndarray, y: np.ndarray, repeats: int) -> float:
    hyper = HyperParameters(batch_size=1280, loss="mse")
    t = Trainer(poet_m0(), hyper)
    t.set_data(x[:2500], y[:2500])
    t.fit(1)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        t.fit(20)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def poet_call_keras(x: np.ndarray, y: np.ndarray, repeats: int) -> float:
    import keras

    model = keras.Sequential(
        [keras.Input((9,))]
        + [keras.layers.Dense(u, activation="relu") for u in (9, 48, 96, 24)]
        + [keras.layers.Dense(9)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7), loss="mse")
    model.fit(x[:2500], y[:2500], batch_size=1280, epochs=1, verbose=0)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x[:2500], y[:2500], batch_size=1280, epochs=20, verbose=0)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--skip-naa", action="store_true")
    parser.add_argument("--phreeqc-cells", type=int, default=64)
    parser.add_argument(
        "--keras-backend",
        choices=["tensorflow", "jax"],
        help="Keras backend (default: tensorflow if installed, else jax)",
    )
    args = parser.parse_args()
    try:
        import keras  # noqa: F401
    except ImportError:
        console.print("[red]keras is missing: pip install -r requirements-bench.lock[/red]")
        return 1
    from threadpoolctl import threadpool_info

    blas = [
        f"{i.get('internal_api')} {i.get('architecture')} ×{i.get('num_threads')}"
        for i in threadpool_info()
    ]
    console.print(f"NumPy BLAS: {', '.join(blas)}; Keras backend: {os.environ['KERAS_BACKEND']}")
    x, y, tx, ty, m = data()
    console.print(f"data: {len(x)} training rows, {len(tx)} held-out rows (CI-sized barite set)")
    torch_reason = torch_available()
    results: dict[str, dict[int, float]] = {"naaice": {}, "keras": {}, "torch": {}}
    epochs_at = {32: 1, 1280: 10}
    with Progress(console=console) as bar:
        task = bar.add_task("throughput", total=2 * (3 if torch_reason is None else 2))
        for batch, ep in epochs_at.items():
            results["naaice"][batch] = time_naaice(
                x, y, m, batch=batch, epochs=ep, repeats=args.repeats
            )
            bar.advance(task)
            results["keras"][batch] = time_keras(
                x, y, m, batch=batch, epochs=ep, repeats=args.repeats
            )
            bar.advance(task)
            if torch_reason is None:
                results["torch"][batch] = time_torch(
                    x, y, m, batch=batch, epochs=ep, repeats=args.repeats
                )
                bar.advance(task)
        task2 = bar.add_task("accuracy (same init, same batches)", total=1)
        acc = accuracy(x, y, tx, ty, m, epochs=args.epochs, batch=1280)
        bar.advance(task2)
    table = Table(title="Training throughput, samples/s (median)")
    table.add_column("framework")
    for batch in epochs_at:
        table.add_column(f"batch {batch}", justify="right")
        table.add_column(f"× Keras @ {batch}", justify="right")
    for name in ("naaice", "keras", "torch"):
        if not results[name]:
            continue
        row = [name]
        for batch in epochs_at:
            row += [
                f"{results[name][batch]:,.0f}",
                f"{results[name][batch] / results['keras'][batch]:.2f}",
            ]
        table.add_row(*row)
    console.print(table)
    if torch_reason:
        console.print(f"PyTorch: skipped — {torch_reason}")
    ratio_32 = results["naaice"][32] / results["keras"][32]
    ratio_1280 = results["naaice"][1280] / results["keras"][1280]
    mse_ratio = acc["mse_naaice"] / acc["mse_keras"]
    console.print(
        f"held-out MSE after {args.epochs} epochs (batch 1280, same init and batch order): "
        f"naaice {acc['mse_naaice']:.4g}, Keras {acc['mse_keras']:.4g} (ratio {mse_ratio:.3f})"
    )
    console.print(phreeqc_fidelity(acc["trainer"], args.phreeqc_cells))
    if not args.skip_naa:
        naa = poet_call_through_naa(x, y, args.repeats)
        local = poet_call_local(x, y, args.repeats)
        kcall = poet_call_keras(x, y, args.repeats)
        console.print(
            f"one POET call (2500 rows × 20 epochs, batch 1280): through the software NAA over UDP "
            f"{naa['naa'] * 1e3:.1f} ms ({naa['bytes'] / 1e3:.0f} kB moved); same core in-process "
            f"{local * 1e3:.1f} ms; Keras fit {kcall * 1e3:.1f} ms "
            f"(NAA / Keras = {naa['naa'] / kcall:.2f})"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(range(1, args.epochs + 1), acc["naaice"], label="naaice core", marker=".")
    backend = os.environ["KERAS_BACKEND"]
    ax.semilogy(
        range(1, args.epochs + 1), acc["keras"], label=f"Keras 3 ({backend}, CPU)", marker="."
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("Huber + λ·mass-balance loss")
    ax.set_title("Same init, data and batch order (batch 1280)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "training-loss.png", dpi=110)
    console.print(f"wrote {OUT / 'training-loss.png'}")
    floors = [
        ("≥ 1.5× Keras at batch 1280", ratio_1280 >= 1.5, f"{ratio_1280:.2f}×"),
        ("≥ 3× Keras at batch 32", ratio_32 >= 3.0, f"{ratio_32:.2f}×"),
        (
            "held-out MSE within 5 % of Keras",
            abs(mse_ratio - 1) <= 0.05 or mse_ratio < 1,
            f"{mse_ratio:.3f}",
        ),
    ]
    for name, ok, value in floors:
        console.print(f"{'[green]PASS' if ok else '[red]FAIL'}[/] {name}: {value}")
    return 0 if all(ok for _, ok, _ in floors) else 1


if __name__ == "__main__":
    sys.exit(main())
