"""`naaice demo`: the main job on the embedded default. Brings up the cluster (real apiserver,
etcd, controller manager, scheduler, KWOK node, pod runner), installs the CRDs and the objects
in examples/, shows them, and tears everything down (unless --keep).

`run_demo` is a list of steps so later parts (operator, software NAAs, the POET training) add
theirs without touching the others. Called by `naaice_cli.main` and `make demo`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.rule import Rule

from naaice_cluster.errors import ClusterError

if TYPE_CHECKING:
    from naaice_cluster.controlplane import Cluster

console = Console()


@dataclass
class DemoContext:
    """What the steps share: the cluster and the objects applied so far."""

    cluster: Cluster
    examples_dir: Path
    applied: list[str] = field(default_factory=list)
    #: Run (last first) before the cluster stops: processes that steps started.
    cleanups: list[Callable[[], None]] = field(default_factory=list)


Step = tuple[str, Callable[[DemoContext], None]]


def apply_examples(ctx: DemoContext) -> None:
    """Apply every examples/*.yaml but the NAAJob, which `run_naajob` applies once the NAAs and
    the operator run."""
    files = sorted(p for p in ctx.examples_dir.glob("*.yaml") if not p.name.startswith("naajob"))
    if not files:
        console.print(f"no examples in {ctx.examples_dir}: nothing to apply")
        return
    for path in files:
        res = ctx.cluster.kubectl("apply", "-f", str(path))
        if res.returncode != 0:
            raise ClusterError(f"applying {path.name} failed: {res.stderr.strip()}")
        for line in res.stdout.splitlines():
            console.print(f"  {line}", soft_wrap=True)
            ctx.applied.append(line.split()[0])


def show_objects(ctx: DemoContext) -> None:
    """`kubectl get nodes` and `kubectl get naajobs,naa,bitstreams` against the apiserver."""
    for args in (("get", "nodes", "-o", "wide"), ("get", "naajobs,naa,bitstreams", "-A")):
        console.print(f"[bold]$ kubectl {' '.join(args)}[/bold]")
        res = ctx.cluster.kubectl(*args)
        out = res.stdout.rstrip() or res.stderr.rstrip()
        console.print(out, markup=False, highlight=False, soft_wrap=True)


def _naajob_steps() -> list[Step]:
    from naaice_cli import demo_naajob

    return [
        ("Start four software NAAs", demo_naajob.start_software_naas),
        ("Apply the examples", apply_examples),
        ("Start the node agent and the operator", demo_naajob.start_agent_and_operator),
        ("Run the example NAAJob", demo_naajob.run_naajob),
        ("Show them", show_objects),
    ]


DEFAULT_STEPS: list[Step] = [
    ("Apply the examples", apply_examples),
    ("Show them", show_objects),
]


def run_demo(
    *,
    keep: bool = False,
    use_current_context: bool = False,
    name: str = "naaice-demo",
    examples_dir: Path | None = None,
    steps: list[Step] | None = None,
) -> DemoContext:
    """Run the demo's steps on a fresh embedded cluster (or the current context's cluster)."""
    from naaice_cluster import controlplane as cp
    from naaice_cluster.paths import repo_root

    console.print(Rule("naaice demo"))
    t0 = time.monotonic()
    if use_current_context:
        cluster = cp.attach_current_context(name=name)
    else:
        from naaice_cluster.cli import build_with_progress

        build_with_progress()
        with console.status("starting the embedded cluster") as status:
            cluster = cp.start_embedded(
                name=name,
                on_step=lambda s: status.update(f"starting the embedded cluster: {s}"),
            )
    console.print(
        f"cluster ready in {time.monotonic() - t0:.1f} s at {cluster.server}; "
        f"CRDs: {', '.join(cluster.crds) or 'none found in crds/'}"
    )
    ctx = DemoContext(cluster=cluster, examples_dir=examples_dir or repo_root() / "examples")
    try:
        for title, step in steps if steps is not None else _naajob_steps():
            console.print(Rule(title))
            step(ctx)
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()
        if keep:
            console.print(Rule("kept running"))
            console.print(f"export KUBECONFIG={cluster.kubeconfig}")
            console.print(f"stop it with: naaice cluster down --name {name}")
        else:
            console.print(Rule("teardown"))
            cp.stop(cluster)
            left = cp.leftover_pids(cluster)
            if left:
                console.print(f"[red]processes left after teardown: {left}[/red]")
            else:
                console.print("cluster stopped, nothing left running")
    return ctx


def demo(
    keep: Annotated[
        bool, typer.Option("--keep", envvar="NAAICE_KEEP", help="Leave the cluster running.")
    ] = False,
    use_current_context: Annotated[
        bool,
        typer.Option(
            "--use-current-context",
            envvar="NAAICE_USE_CURRENT_CONTEXT",
            help="Use KUBECONFIG's current cluster instead of the embedded one.",
        ),
    ] = False,
    name: Annotated[str, typer.Option("--name", envvar="NAAICE_NAME")] = "naaice-demo",
) -> None:
    """Bring up the embedded cluster, install the CRDs and examples, show them, tear down."""
    try:
        run_demo(keep=keep, use_current_context=use_current_context, name=name)
    except ClusterError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
