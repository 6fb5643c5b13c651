"""The NAAJob part of `naaice demo`: four software NAAs from examples/naas.yaml, the node agent
(or, when it cannot mark them, a clearly labelled stand-in), the operator, the example NAAJob
with live progress, and a summary (placement, flash, run time, energy per NAA).

Steps for `naaice_cli.demo.run_demo`; every process started here is stopped by the cleanups
the steps register on the context."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from naaice_cli.demo import DemoContext

console = Console()
NAMESPACE = "naaice-system"
BITSTREAM_DIR = Path("/opt/naaice/bitstreams")


def _naaice() -> str:
    exe = Path(sys.executable).with_name("naaice")
    return str(exe) if exe.exists() else (shutil.which("naaice") or "naaice")


def _spawn(ctx: DemoContext, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    log = ctx.cluster.run_dir / "logs" / f"demo-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAAICE_")}
    env["KUBECONFIG"] = str(ctx.cluster.kubeconfig)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    ctx.cleanups.append(stop)
    return proc


def _kubectl(ctx: DemoContext, *args: str, input: str | None = None) -> str:
    res = ctx.cluster.kubectl(*args, input=input)
    if res.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def start_software_naas(ctx: DemoContext) -> None:
    """The four software NAAs of examples/naas.yaml on 127.0.0.10–13, sharing one token."""
    BITSTREAM_DIR.mkdir(parents=True, exist_ok=True)
    for artifact in (ctx.examples_dir / "bitstreams").glob("*.yaml"):
        shutil.copyfile(artifact, BITSTREAM_DIR / artifact.name)
    token = secrets.token_hex(32)
    token_file = ctx.cluster.run_dir / "demo-naa.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    _kubectl(ctx, "create", "namespace", NAMESPACE)
    _kubectl(
        ctx,
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "naa-management-token", "namespace": NAMESPACE},
                "data": {"token": base64.b64encode(token.encode()).decode()},
            }
        ),
    )
    naas = [d for d in yaml.safe_load_all((ctx.examples_dir / "naas.yaml").read_text()) if d]
    procs = []
    for doc in naas:
        spec = doc["spec"]
        port = spec["management"]["endpoint"].rsplit(":", 1)[1]
        procs.append(
            _spawn(
                ctx,
                doc["metadata"]["name"],
                [
                    _naaice(),
                    "runtime",
                    "serve",
                    "--name",
                    doc["metadata"]["name"],
                    "--address",
                    spec["address"],
                    "--mgmt-port",
                    port,
                    "--token-file",
                    str(token_file),
                    "--board-model",
                    spec["board"]["model"],
                ],
            )
        )
        console.print(
            f"  {doc['metadata']['name']}: data plane {spec['address']}:4791, "
            f"management {spec['management']['endpoint']}"
        )
    time.sleep(1.0)
    dead = [p.args for p in procs if p.poll() is not None]
    if dead:
        raise RuntimeError(f"software NAAs exited at start: {dead}; see demo-*.log")


def start_agent_and_operator(ctx: DemoContext) -> None:
    """The node agent probes the NAAs and writes their conditions; the operator reconciles."""
    _spawn(
        ctx,
        "agent",
        [
            _naaice(),
            "agent",
            "run",
            "--no-device-plugin",
            "--claim-unassigned",
            "--node-name",
            (ctx.cluster.node_names or ["naa-node-0"])[0],
            "--lease-namespace",
            NAMESPACE,
            "--metrics-port",
            "0",
            "--kubeconfig",
            str(ctx.cluster.kubeconfig),
        ],
    )
    _spawn(
        ctx,
        "operator",
        [
            _naaice(),
            "operator",
            "run",
            "--all-namespaces",
            "--lease-namespace",
            NAMESPACE,
            "--standalone",
        ],
    )
    deadline = time.monotonic() + 30
    ready: list[str] = []
    while time.monotonic() < deadline:
        ready = _ready_naas(ctx)
        if len(ready) >= 1:
            break
        time.sleep(0.5)
    if not ready:
        console.print(
            "[yellow]the agent did not mark any NAA Ready within 30 s; marking them "
            "Ready from the demo instead (see demo-agent.log)[/yellow]"
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conds = [
            {
                "type": t,
                "status": "True",
                "reason": "DemoStandIn",
                "message": "marked by naaice demo",
                "lastTransitionTime": now,
            }
            for t in ("Ready", "Healthy", "Reachable")
        ]
        for name in ("naa-0", "naa-1", "naa-2", "naa-3"):
            _kubectl(
                ctx,
                "patch",
                "naa",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps({"status": {"conditions": conds}}),
            )
    console.print(_kubectl(ctx, "get", "naa"), markup=False, highlight=False)


def _ready_naas(ctx: DemoContext) -> list[str]:
    raw = json.loads(_kubectl(ctx, "get", "naa", "-o", "json"))
    out = []
    for item in raw.get("items", []):
        conds = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
        if all(conds.get(t) == "True" for t in ("Ready", "Healthy", "Reachable")):
            out.append(item["metadata"]["name"])
    return out


def _job(ctx: DemoContext, name: str) -> dict[str, Any]:
    return dict(json.loads(_kubectl(ctx, "get", "naajob", name, "-n", "default", "-o", "json")))


def _cond(job: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in job.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return {}


def run_naajob(ctx: DemoContext, *, timeout: float = 900.0) -> None:
    """Apply examples/naajob.yaml as a user would (only its TTL dropped, so the finished job
    stays to be shown) and follow it live."""
    job = yaml.safe_load((ctx.examples_dir / "naajob.yaml").read_text())
    job["spec"].pop("ttlSecondsAfterFinished", None)
    name = job["metadata"]["name"]
    _kubectl(ctx, "apply", "-n", "default", "-f", "-", input=json.dumps(job))
    started = time.monotonic()
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            body = _job(ctx, name)
            table = Table(title=f"NAAJob default/{name}  ({time.monotonic() - started:.0f} s)")
            for col in ("condition", "status", "reason", "message"):
                table.add_column(col, overflow="fold")
            for kind in ("Scheduled", "Flashed", "Ready", "Succeeded", "Failed"):
                c = _cond(body, kind)
                table.add_row(
                    kind,
                    c.get("status", "-"),
                    c.get("reason", ""),
                    (c.get("message", "") or "")[:90],
                )
            live.update(table)
            if (
                _cond(body, "Succeeded").get("status") == "True"
                or _cond(body, "Failed").get("status") == "True"
            ):
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"NAAJob {name} did not finish within {timeout:.0f} s")
            time.sleep(0.5)
    ctx.applied.append(f"naajob/{name}")
    console.print()
    pod_dir = ctx.cluster.pod_dir("default", f"{name}-a{body['status'].get('failedAttempts', 0)}-0")
    logs = sorted(pod_dir.glob("*.log")) if pod_dir else []
    if logs:
        console.print(f"[bold]host program output ({logs[0].name}, last lines):[/bold]")
        for line in logs[0].read_text(errors="replace").splitlines()[-8:]:
            console.print(f"  {line}", markup=False, highlight=False)
    _keep_results(pod_dir)
    summary(ctx, body)


def _keep_results(pod_dir: Path | None, dest: Path = Path("out/demo")) -> None:
    """Copy the host program's result.json and plots out of the pod's working directory, which
    the pod runner removes at teardown."""
    if pod_dir is None:
        return
    found = [p for p in (pod_dir / "work").rglob("*") if p.suffix in {".json", ".png"}]
    if not found:
        return
    dest.mkdir(parents=True, exist_ok=True)
    for path in found:
        shutil.copy2(path, dest / path.name)
    names = ", ".join(sorted(p.name for p in found))
    console.print(f"[bold]results kept in {dest}/[/bold]: {names}")


def summary(ctx: DemoContext, body: dict[str, Any]) -> None:
    status = body.get("status", {})
    table = Table(title="summary")
    table.add_column("")
    table.add_column("")
    ok = _cond(body, "Succeeded").get("status") == "True"
    table.add_row(
        "result",
        "[green]Succeeded[/green]"
        if ok
        else f"[red]Failed[/red]: {_cond(body, 'Failed').get('message', '')}",
    )
    for a in status.get("assignedNAAs", []):
        table.add_row(
            f"placement ({a['request']})",
            f"{a['naa']} at {a['address']}:{a['port']}, fn {a['fnCode']}, "
            f"{a['bitstream']} {a['digest'][:19]}…",
        )
    table.add_row("NAA_SPEC", status.get("naaSpec", ""))
    table.add_row("flash", _cond(body, "Flashed").get("message", ""))
    start, end = status.get("startTime"), status.get("completionTime")
    if start and end:
        secs = (
            datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))
        ).total_seconds()
        table.add_row("run time (scheduled → finished)", f"{secs:.0f} s")
    energy = status.get("energy", {})
    for e in energy.get("perNAA", []):
        table.add_row(f"energy {e['naa']}", f"{e['joules']:.1f} J")
    if energy:
        table.add_row(
            "energy total",
            f"{energy.get('totalJoules', 0):.1f} J over the bind–unbind "
            f"window, coverage {energy.get('coverage', 0):.3f}, {energy.get('method')}",
        )
    console.print(table)
    console.print(_kubectl(ctx, "get", "naajobs", "-A"), markup=False, highlight=False)
    if not ok:
        raise RuntimeError("the example NAAJob failed; see the summary above")
