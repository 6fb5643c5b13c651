"""`naaice cluster build|up|down|status|kubeconfig` and the top-level `naaice logs`: the command
line of the embedded control plane, mounted by `naaice_cli.main`. Thin: every command calls
`naaice_cluster.build` or `naaice_cluster.controlplane`, and maps their errors to one line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from naaice_cluster.errors import ClusterError

app = typer.Typer(no_args_is_help=True, help="Embedded Kubernetes control plane.")
#: Extra commands naaice_cli.main mounts at the top level (`naaice logs ...`).
TOP_LEVEL = ("logs",)

console = Console(stderr=True)
T = TypeVar("T")

NameOpt = Annotated[
    str, typer.Option("--name", envvar="NAAICE_NAME", help="Name of the cluster (its run dir).")
]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ClusterError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _run_dir(name: str) -> Path:
    from naaice_cluster.controlplane import run_dir_for

    return run_dir_for(name)


def build_with_progress(*, force: bool = False) -> None:
    """Build the pinned binaries unless cached, with one progress step per binary."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from naaice_cluster import build as b
    from naaice_cluster.paths import KUBE_VERSION, bin_dir

    if not force and b.cached_binaries_current():
        console.print(f"binaries for Kubernetes {KUBE_VERSION} are cached in {bin_dir()}")
        return
    console.print(
        f"building Kubernetes {KUBE_VERSION}, etcd and KWOK from the Go module proxy "
        "(a cold build takes several minutes; later builds are cached)"
    )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("go build", total=len(b.ALL_BINARIES) + 1)

        def on_step(name: str, index: int, _total: int) -> None:
            progress.update(task, completed=index, description=f"go build {name}")

        record = b.build(force=force, progress=on_step)
        progress.update(task, completed=len(b.ALL_BINARIES) + 1, description="done")
    console.print(f"built in {record.get('totalSeconds')} s into {bin_dir()}")


@app.command()
def build(
    force: Annotated[
        bool, typer.Option("--force", envvar="NAAICE_FORCE", help="Rebuild even if cached.")
    ] = False,
) -> None:
    """Build the pinned Kubernetes, etcd and KWOK binaries into $NAAICE_CACHE (once)."""
    with _errors():
        build_with_progress(force=force)


def _with_status(message: str, fn: Callable[[Callable[[str], None]], T]) -> T:
    with console.status(message) as status:
        t0 = time.monotonic()

        def on_step(step: str) -> None:
            status.update(f"{message}: {step} ({time.monotonic() - t0:.1f} s)")

        return fn(on_step)


@app.command()
def up(
    name: NameOpt = "naaice",
    nodes: Annotated[
        int, typer.Option("--nodes", envvar="NAAICE_NODES", min=1, help="Fake nodes to register.")
    ] = 1,
    crds: Annotated[
        Path | None,
        typer.Option("--crds", envvar="NAAICE_CRDS", help="Directory of CRD YAML (default crds/)."),
    ] = None,
    use_current_context: Annotated[
        bool,
        typer.Option(
            "--use-current-context",
            envvar="NAAICE_USE_CURRENT_CONTEXT",
            help="Use the cluster of KUBECONFIG's current context instead of starting one.",
        ),
    ] = False,
) -> None:
    """Start the embedded control plane (or attach to KUBECONFIG's cluster) and install CRDs."""
    from naaice_cluster import controlplane as cp

    with _errors():
        if use_current_context:
            cluster = cp.attach_current_context(name=name, install_crds_from=crds)
        else:
            build_with_progress()
            node_names = [f"naa-node-{i}" for i in range(nodes)]
            t0 = time.monotonic()
            cluster = _with_status(
                "starting the embedded cluster",
                lambda on_step: cp.start_embedded(
                    name=name, nodes=node_names, install_crds_from=crds, on_step=on_step
                ),
            )
            console.print(f"cluster {name!r} ready in {time.monotonic() - t0:.1f} s")
    if cluster.crds:
        console.print(f"CRDs established: {', '.join(cluster.crds)}")
    else:
        console.print("no CRDs found in crds/: none installed")
    console.print(f"export KUBECONFIG={cluster.kubeconfig}")


@app.command()
def down(name: NameOpt = "naaice") -> None:
    """Stop the cluster started by `up`, leaving no processes, webhooks or files behind."""
    from naaice_cluster import controlplane as cp

    with _errors():
        cluster = cp.Cluster.load(_run_dir(name))
        cp.stop(cluster)
        left = cp.leftover_pids(cluster)
    if left:
        console.print(f"[red]processes still alive after teardown: {left}[/red]")
        raise typer.Exit(1)
    console.print(f"cluster {name!r} stopped")


@app.command()
def status(
    name: NameOpt = "naaice",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether the cluster's processes are alive and the apiserver is ready."""
    from naaice_cluster import controlplane as cp

    with _errors():
        info = cp.status(cp.Cluster.load(_run_dir(name)))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(f"cluster {info['name']}: {'ready' if info['ready'] else 'NOT ready'}")
        typer.echo(f"  server      {info['server']}")
        typer.echo(f"  kubeconfig  {info['kubeconfig']}")
        for proc, p in info["processes"].items():
            typer.echo(f"  {proc:<24} pid {p['pid']:<8} {'alive' if p['alive'] else 'DEAD'}")
    if not info["ready"]:
        raise typer.Exit(1)


@app.command()
def kubeconfig(name: NameOpt = "naaice") -> None:
    """Print the kubeconfig path: `export KUBECONFIG=$(naaice cluster kubeconfig)`."""
    from naaice_cluster import controlplane as cp

    with _errors():
        typer.echo(str(cp.Cluster.load(_run_dir(name)).kubeconfig))


def pod_log_file(*, run_dir: Path, namespace: str, pod: str, container: str | None) -> Path:
    """The log file of a container of the newest pod `namespace/pod` in a cluster's run dir."""
    from naaice_cluster import controlplane as cp
    from naaice_cluster.errors import StateError

    cluster = cp.Cluster.load(run_dir)
    pod_dir = cluster.pod_dir(namespace, pod)
    if pod_dir is None:
        raise StateError(
            f"no pod {namespace}/{pod} has run on cluster {cluster.name!r}: check the name and "
            "namespace (`kubectl get pods -A`); only pods on the fake nodes have logs here"
        )
    files = sorted(pod_dir.glob("*.log"))
    if container is None:
        if len(files) != 1:
            names = ", ".join(f.stem for f in files)
            raise StateError(f"pod {namespace}/{pod} has containers {names}: pick one with -c")
        return files[0]
    path = pod_dir / f"{container}.log"
    if not path.exists():
        raise StateError(f"pod {namespace}/{pod} has no container {container!r}")
    return path


def logs(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    namespace: Annotated[
        str, typer.Option("-n", "--namespace", envvar="NAAICE_NAMESPACE")
    ] = "default",
    container: Annotated[str | None, typer.Option("-c", "--container")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing.")] = False,
    name: NameOpt = "naaice",
) -> None:
    """Print a pod's logs (the embedded cluster has no kubelet for `kubectl logs`)."""
    with _errors():
        path = pod_log_file(
            run_dir=_run_dir(name), namespace=namespace, pod=pod, container=container
        )
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(65536)
            if chunk:
                typer.echo(chunk.decode(errors="replace"), nl=False)
                continue
            if not follow or not path.with_suffix(".pid").exists():
                break
            time.sleep(0.2)
