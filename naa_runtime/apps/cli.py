"""`naaice train …`: train the POET surrogate on an NAA (`poet`) and estimate a model's FPGA
resources (`estimate`).

`train_app` is mounted at top level by `naa_runtime.cli` (`TOP_LEVEL`). Heavy imports happen
inside the commands. Every flag has an env twin `NAAICE_<FLAG>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from naa_runtime.training.graph import NetworkGraph

train_app = typer.Typer(
    help="Train the POET barite/celestite surrogate on an NAA; estimate FPGA resources.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _env(flag: str) -> str:
    return "NAAICE_" + flag.upper().replace("-", "_")


def _load_graph(path: Path | None) -> NetworkGraph:
    from naa_runtime.training.graph import GraphError, parse_description, poet_m0

    if path is None:
        return poet_m0()
    try:
        return parse_description(path.read_text())
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--model") from exc
    except GraphError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc


@train_app.command()
def poet(  # noqa: PLR0917 - typer reads every option from this signature
    preset: Annotated[
        str,
        typer.Option(envvar=_env("preset"), help="Dataset: ci (20×20×100), barite50, barite200."),
    ] = "ci",
    iterations: Annotated[
        int | None, typer.Option(envvar=_env("iterations"), help="Override the preset's steps.")
    ] = None,
    keep_inert: Annotated[
        float,
        typer.Option(envvar=_env("keep-inert"), help="Fraction of non-reacting pairs to keep."),
    ] = 1.0,
    model: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("model"), help="Model description (JSON/YAML); default 9-9-48-96-24-9."
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option(envvar=_env("epochs"), help="Epochs (per call in poet mode).")
    ] = 20,
    batch_size: Annotated[int, typer.Option(envvar=_env("batch-size"))] = 1280,
    learning_rate: Annotated[float, typer.Option(envvar=_env("learning-rate"))] = 1e-3,
    optimizer: Annotated[str, typer.Option(envvar=_env("optimizer"), help="adam or sgd.")] = "adam",
    loss: Annotated[str, typer.Option(envvar=_env("loss"), help="huber or mse.")] = "huber",
    huber_delta: Annotated[float, typer.Option(envvar=_env("huber-delta"))] = 0.05,
    mb_lambda: Annotated[
        float, typer.Option(envvar=_env("mb-lambda"), help="Weight λ of the mass-balance term.")
    ] = 0.0,
    mb_norm: Annotated[str, typer.Option(envvar=_env("mb-norm"), help="l2 or l1.")] = "l2",
    seed: Annotated[int, typer.Option(envvar=_env("seed"))] = 0,
    mode: Annotated[
        str,
        typer.Option(
            envvar=_env("mode"),
            help="session: train.configure/load/fit/fetch/infer (fn 17-21); poet: POET's "
            "offload (fn 16), one call per --chunk-rows rows.",
        ),
    ] = "session",
    chunk_rows: Annotated[int, typer.Option(envvar=_env("chunk-rows"))] = 2500,
    board: Annotated[
        str, typer.Option(envvar=_env("board"), help="Board for the resource check ('' skips).")
    ] = "u55c",
    local: Annotated[
        bool,
        typer.Option(
            envvar=_env("local"),
            help="Train in-process: the CPU reference of the same core, not the NAA path.",
        ),
    ] = False,
    out: Annotated[
        Path, typer.Option(envvar=_env("out"), help="Directory for result.json and the plots.")
    ] = Path("naaice-train-poet"),
    local_address: Annotated[
        str | None,
        typer.Option(envvar=_env("local-address"), help="Host-side RoCEv2 address."),
    ] = None,
) -> None:
    """Train the POET surrogate through the NAAs in NAA_SPEC (or --local) and evaluate it."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from naa_runtime.apps import train_poet as app
    from naa_runtime.client import NaaError
    from naa_runtime.training.trainer import HyperParameters, TrainingError

    console = Console(stderr=True)
    try:
        hyper = HyperParameters(
            optimizer=optimizer,
            learning_rate=learning_rate,
            batch_size=batch_size,
            loss=loss,
            huber_delta=huber_delta,
            mb_lambda=mb_lambda,
            mb_norm=mb_norm,
            seed=seed,
        )
    except TrainingError as exc:
        raise typer.BadParameter(str(exc)) from exc
    config = app.RunConfig(
        preset=preset,
        iterations=iterations,
        keep_inert=keep_inert,
        graph=_load_graph(model),
        hyper=hyper,
        epochs=epochs,
        mode=mode,
        chunk_rows=chunk_rows,
        board=board or None,
        local=local,
        local_address=local_address,
        out=out,
    )
    with console.status("generating the barite dataset (cached under $NAAICE_CACHE/poet)"):
        try:
            prepared = app.prepare(config)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--preset") from exc
    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("", total=app.steps(config, prepared))
        try:
            result = app.run(
                config,
                prepared=prepared,
                progress=app.Progress(lambda n, s: bar.update(task, advance=n, description=s)),
            )
        except (app.AppError, NaaError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
    test = result["evaluation"].get("test", {})
    console.print(
        f"{result['path']}: {len(result['lossHistory'])} steps in "
        f"{result['trainingSeconds']:.2f} s; test MSE {test.get('mse', float('nan')):.3g}; "
        "mean |Δm| per element (mol): "
        + ", ".join(f"{k} {v:.2e}" for k, v in test.get("massResidualMean", {}).items())
    )
    console.print(f"wrote {out / 'result.json'} and plots")


@train_app.command()
def estimate(
    model: Annotated[Path | None, typer.Option(envvar=_env("model"))] = None,
    board: Annotated[str, typer.Option(envvar=_env("board"))] = "u55c",
    reuse_factor: Annotated[int | None, typer.Option(envvar=_env("reuse-factor"))] = None,
    number_format: Annotated[
        str | None,
        typer.Option(envvar=_env("number-format"), help="float64, float32, fixed16, fixed8."),
    ] = None,
) -> None:
    """Print the FPGA resource estimate of a model (JSON); exit 1 when it does not fit."""
    from naa_runtime.training import estimator

    graph = _load_graph(model)
    try:
        est = estimator.estimate(
            graph=graph,
            target=estimator.board(board),
            reuse_factor=reuse_factor,
            number_format=number_format,
        )
    except estimator.ModelDoesNotFit as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    except estimator.EstimatorError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(json.dumps(est.to_json(), indent=2))
