"""Starts, describes and stops an embedded Kubernetes control plane: etcd, kube-apiserver (RBAC
on), kube-controller-manager, kube-scheduler, KWOK (fake nodes) and the pod runner, all on
127.0.0.1 with free ports; or attaches to an existing cluster from KUBECONFIG. The one code path
behind `naaice cluster up|down|status`, the pytest `cluster` fixture, `naaice demo` and
bench/cluster_start.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from naaice_cluster import config, pki
from naaice_cluster._procs import alive, cmdline, free_ports, spawn, stop_groups
from naaice_cluster.build import STAGES_FILE, ensure_built
from naaice_cluster.errors import StartError, StateError
from naaice_cluster.kube import ApiError, Credentials, Kube
from naaice_cluster.paths import bin_dir, crds_dir, run_root
from naaice_cluster.podrunner.runner import CREATED_MOUNT_POINTS

Step = Callable[[str], None]
#: Webhook configurations Kopf writes when `settings.admission.managed` is set.
KOPF_WEBHOOK_NAME = "auto.kopf.dev"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by=naaice"
DEFAULT_NODE = "naa-node-0"


@dataclass
class ProcessRecord:
    """One process of the control plane, as recorded in state.json."""

    name: str
    pid: int
    log: str
    args: list[str]


@dataclass
class Cluster:
    """A running cluster: embedded (we own its processes) or external (from a kubeconfig)."""

    name: str
    run_dir: Path
    kubeconfig: Path
    server: str
    admin_token: str | None
    ca_file: Path | None
    external: bool = False
    node_names: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    binaries: Path = field(default_factory=bin_dir)
    crds: list[str] = field(default_factory=list)
    started_at: str = ""
    #: Popen handles when this process started the cluster (so teardown can reap them).
    children: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    # -- using it ---------------------------------------------------------------------------

    @property
    def layout(self) -> config.Layout:
        return config.Layout(self.run_dir)

    def kubectl_path(self) -> str:
        local = self.binaries / "kubectl"
        if local.exists():
            return str(local)
        found = shutil.which("kubectl")
        if found is None:
            raise StateError("kubectl not found: run `naaice cluster build` or put it on PATH")
        return found

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; stdout/stderr are captured as text."""
        return subprocess.run(
            [self.kubectl_path(), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def kube(self) -> Kube:
        """The minimal JSON client (embedded clusters, which use token auth)."""
        return Kube(Credentials.from_kubeconfig(self.kubeconfig))

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for this cluster (the caller closes it)."""
        from kubernetes import config as kconfig

        return kconfig.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def issue_webhook_cert(
        self, out_dir: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    ) -> pki.CertPaths:
        """A serving certificate for an admission webhook on this machine. The webhook
        configuration's caBundle must be the returned `ca`: the cluster CA for the embedded
        cluster, a CA of our own (kept in the run dir) for an external one."""
        ca_dir = self.layout.pki if not self.external else self.run_dir / "webhook-ca"
        if not (ca_dir / "ca.key").exists():
            pki.create_ca(ca_dir, common_name="naaice-webhook-ca")
        return pki.issue_serving_cert(
            ca_cert=ca_dir / "ca.crt", ca_key=ca_dir / "ca.key", out_dir=out_dir, hosts=hosts
        )

    def pod_dir(self, namespace: str, pod: str) -> Path | None:
        """The pod runner's directory of the newest pod `namespace/pod` (logs, volumes)."""
        candidates = sorted(
            self.layout.pods.glob(f"{namespace}_{pod}_*"), key=lambda p: p.stat().st_mtime
        )
        return candidates[-1] if candidates else None

    def save(self) -> None:
        data: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "children"
        }
        data.update(
            processes=[asdict(p) for p in self.processes],
            run_dir=str(self.run_dir),
            kubeconfig=str(self.kubeconfig),
            ca_file=str(self.ca_file) if self.ca_file else None,
            binaries=str(self.binaries),
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.layout.state.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> Cluster:
        state = config.Layout(run_dir).state
        if not state.is_file():
            raise StateError(
                f"no cluster recorded in {run_dir}: start one with `naaice cluster up`"
            )
        data = json.loads(state.read_text())
        procs = [ProcessRecord(**p) for p in data.pop("processes")]
        return cls(
            **{
                **data,
                "run_dir": Path(data["run_dir"]),
                "kubeconfig": Path(data["kubeconfig"]),
                "ca_file": Path(data["ca_file"]) if data["ca_file"] else None,
                "binaries": Path(data["binaries"]),
                "processes": procs,
            }
        )


def run_dir_for(name: str) -> Path:
    return run_root() / name


# -- readiness --------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_ok(url: str, *, token: str | None = None, ctx: ssl.SSLContext | None = None) -> str:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:
            body: str = resp.read().decode(errors="replace")
            return body if resp.status == 200 else ""
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return ""


def _http_says_ok(url: str, ctx: ssl.SSLContext) -> bool:
    return _http_ok(url, ctx=ctx) == "ok"


def _wait(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    procs: Sequence[tuple[subprocess.Popen[bytes], Path, str]] = (),
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        for proc, log, proc_name in procs:
            if proc.poll() is not None:
                raise StartError(
                    f"{proc_name} exited with code {proc.returncode} while "
                    f"waiting for {what}; the end of {log}:\n{_tail(log)}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {log}:\n{_tail(log, 8)}" for _, log, _ in procs)
            raise StartError(
                f"timed out after {timeout:.0f}s waiting for {what}; recent logs:\n{logs}"
            )
        time.sleep(0.1)


# -- start ------------------------------------------------------------------------------------


def _write_pki(layout: config.Layout) -> tuple[str, dict[str, str]]:
    ca = pki.create_ca(layout.pki)
    pki.issue_serving_cert(
        ca_cert=ca.cert,
        ca_key=ca.key,
        out_dir=layout.pki,
        name="apiserver",
        hosts=pki.APISERVER_HOSTS,
    )
    pki.create_service_account_key(layout.pki / "sa.key")
    # The aggregation layer's identity towards extension apiservers (request-header auth).
    pki.issue_client_cert(
        ca_cert=ca.cert, ca_key=ca.key, out_dir=layout.pki, name=config.FRONT_PROXY_CLIENT
    )
    tokens = {
        "admin": secrets.token_hex(24),
        "kube-controller-manager": secrets.token_hex(24),
        "kube-scheduler": secrets.token_hex(24),
    }
    layout.tokens.write_text(
        config.render_token_file(
            [
                (tokens["admin"], "admin", ["system:masters"]),
                (tokens["kube-controller-manager"], "system:kube-controller-manager", []),
                (tokens["kube-scheduler"], "system:kube-scheduler", []),
            ]
        )
    )
    layout.tokens.chmod(0o600)
    return tokens["admin"], tokens


def _write_kubeconfigs(
    layout: config.Layout, *, name: str, server: str, tokens: dict[str, str]
) -> None:
    ca = layout.pki / "ca.crt"
    layout.kubeconfig.write_text(
        config.render_kubeconfig(
            name=name, server=server, ca_file=ca, token=tokens["admin"], user="admin"
        )
    )
    for comp in ("kube-controller-manager", "kube-scheduler"):
        layout.component_kubeconfig(comp).write_text(
            config.render_kubeconfig(
                name=name, server=server, ca_file=ca, token=tokens[comp], user=f"system:{comp}"
            )
        )
    for path in (
        layout.kubeconfig,
        *map(layout.component_kubeconfig, ("kube-controller-manager", "kube-scheduler")),
    ):
        path.chmod(0o600)


def _node_ready(kube: Kube, name: str) -> bool:
    try:
        node = kube.get(f"/api/v1/nodes/{name}")
    except (ApiError, OSError):
        return False
    conds = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _exists(kube: Kube, path: str) -> bool:
    try:
        kube.get(path)
    except (ApiError, OSError):
        return False
    return True


def start_embedded(
    *,
    name: str = "naaice",
    run_dir: Path | None = None,
    nodes: Sequence[str] = (DEFAULT_NODE,),
    install_crds_from: Path | None = None,
    on_step: Step | None = None,
) -> Cluster:
    """Start a complete embedded cluster and return it once every part is ready.

    Raises `StartError` (with the failing component's log tail) and leaves nothing running
    when any part fails to come up."""
    step = on_step or (lambda _msg: None)
    run_dir = run_dir or run_dir_for(name)
    if config.Layout(run_dir).state.exists():
        raise StateError(
            f"a cluster is already recorded in {run_dir}: stop it with "
            f"`naaice cluster down --name {name}` or pick another --name"
        )
    step("binaries")
    bins = ensure_built()
    layout = config.Layout(run_dir)
    for d in (layout.pki, layout.etcd_data, layout.logs, layout.pods):
        d.mkdir(parents=True, exist_ok=True)
    ports = config.Ports(*free_ports(5))
    server = f"https://127.0.0.1:{ports.apiserver}"
    step("certificates and tokens")
    admin_token, tokens = _write_pki(layout)
    _write_kubeconfigs(layout, name=name, server=server, tokens=tokens)
    cluster = Cluster(
        name=name,
        run_dir=run_dir,
        kubeconfig=layout.kubeconfig,
        server=server,
        admin_token=admin_token,
        ca_file=layout.pki / "ca.crt",
        node_names=list(nodes),
        binaries=bins,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    popens: list[tuple[subprocess.Popen[bytes], Path, str]] = []

    def launch(proc_name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = layout.logs / f"{proc_name}.log"
        proc = spawn(args, log=log, env=env if env is not None else config.go_env(os.environ))
        popens.append((proc, log, proc_name))
        cluster.processes.append(ProcessRecord(proc_name, proc.pid, str(log), list(args)))
        cluster.save()

    try:
        step("etcd")
        launch("etcd", config.etcd_args(binary=bins / "etcd", layout=layout, ports=ports))
        etcd_health = f"http://127.0.0.1:{ports.etcd_client}/health"
        _wait("etcd /health", lambda: '"true"' in _http_ok(etcd_health), timeout=60, procs=popens)

        step("kube-apiserver")
        launch(
            "kube-apiserver",
            config.apiserver_args(binary=bins / "kube-apiserver", layout=layout, ports=ports),
        )
        ca_ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
        _wait(
            "kube-apiserver /readyz",
            lambda: _http_ok(f"{server}/readyz", token=admin_token, ctx=ca_ctx) == "ok",
            timeout=180,
            procs=popens,
        )
        kube = cluster.kube()

        step("controller manager, scheduler, KWOK, pod runner")
        launch(
            "kube-controller-manager",
            config.controller_manager_args(
                binary=bins / "kube-controller-manager", layout=layout, ports=ports
            ),
        )
        launch(
            "kube-scheduler",
            config.scheduler_args(binary=bins / "kube-scheduler", layout=layout, ports=ports),
        )
        for node in nodes:
            kube.create("/api/v1/nodes", config.fake_node(name=node))
        launch(
            "kwok",
            config.kwok_args(binary=bins / "kwok", layout=layout, stages=bins / STAGES_FILE),
        )
        launch("pod-runner", _pod_runner_args(cluster, server_port=ports.apiserver))

        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        for comp, port in (
            ("kube-controller-manager", ports.controller_manager),
            ("kube-scheduler", ports.scheduler),
        ):
            url = f"https://127.0.0.1:{port}/healthz"
            _wait(
                f"{comp} /healthz",
                functools.partial(_http_says_ok, url, insecure),
                timeout=120,
                procs=popens,
            )
        step("fake nodes Ready")
        for node in nodes:
            _wait(
                f"node {node} Ready",
                functools.partial(_node_ready, kube, node),
                timeout=120,
                procs=popens,
            )
        step("default ServiceAccount")
        _wait(
            "serviceaccount default/default",
            lambda: _exists(kube, "/api/v1/namespaces/default/serviceaccounts/default"),
            timeout=120,
            procs=popens,
        )
        step("pod runner")
        ready_file = layout.pods / ".ready"
        _wait("the pod runner", ready_file.exists, timeout=90, procs=popens)

        crd_dir = install_crds_from if install_crds_from is not None else crds_dir()
        step("CRDs")
        cluster.crds = install_crds(cluster, crd_dir)
        cluster.save()
    except BaseException:
        _stop_processes(cluster, popens=[p for p, _, _ in popens])
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    cluster.children = [p for p, _, _ in popens]
    return cluster


def _pod_runner_args(cluster: Cluster, *, server_port: int) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "naaice_cluster.podrunner",
        f"--kubeconfig={cluster.kubeconfig}",
        f"--pods-dir={cluster.layout.pods}",
        f"--apiserver-port={server_port}",
    ]
    args += [f"--node={n}" for n in cluster.node_names]
    return args


# -- CRDs -------------------------------------------------------------------------------------


def crd_names(directory: Path) -> list[str]:
    """Names of the CustomResourceDefinitions in the YAML files of `directory`."""
    names = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                names.append(str(doc["metadata"]["name"]))
    return names


def install_crds(cluster: Cluster, directory: Path, *, timeout: float = 120) -> list[str]:
    """Apply every CRD YAML in `directory` and wait until each is Established.

    Returns the CRD names; an empty list when the directory holds none."""
    names = crd_names(directory) if directory.is_dir() else []
    if not names:
        return []
    for path in sorted(directory.glob("*.yaml")):
        res = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        if res.returncode != 0:
            raise StartError(f"applying {path} failed: {res.stderr.strip()}")
    res = cluster.kubectl(
        "wait",
        "--for=condition=Established",
        f"--timeout={int(timeout)}s",
        *(f"crd/{n}" for n in names),
        timeout=timeout + 30,
    )
    if res.returncode != 0:
        raise StartError(f"CRDs did not become Established: {res.stderr.strip()}")
    return names


# -- external cluster -------------------------------------------------------------------------


def attach_current_context(
    *, name: str = "naaice", run_dir: Path | None = None, install_crds_from: Path | None = None
) -> Cluster:
    """Use the cluster of KUBECONFIG's current context (kind, k3d, a real one) instead."""
    env = os.environ.get("KUBECONFIG", "")
    kubeconfig = Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"
    if not kubeconfig.is_file():
        raise StateError(
            f"--use-current-context: no kubeconfig at {kubeconfig}; set KUBECONFIG to a cluster's "
            "kubeconfig or drop the flag to start the embedded cluster"
        )
    doc = yaml.safe_load(kubeconfig.read_text()) or {}
    ctx_name = doc.get("current-context")
    contexts = {c["name"]: c["context"] for c in doc.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in doc.get("clusters", [])}
    if ctx_name not in contexts:
        raise StateError(f"{kubeconfig} has no current-context: run `kubectl config use-context`")
    server = clusters[contexts[ctx_name]["cluster"]]["server"]
    cluster = Cluster(
        name=name,
        run_dir=run_dir or run_dir_for(name),
        kubeconfig=kubeconfig,
        server=server,
        admin_token=None,
        ca_file=None,
        external=True,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    res = cluster.kubectl("get", "--raw=/readyz", timeout=30)
    if res.returncode != 0 or res.stdout.strip() != "ok":
        raise StartError(f"the current context's cluster at {server} is not ready: {res.stderr}")
    cluster.crds = install_crds(
        cluster, install_crds_from if install_crds_from is not None else crds_dir()
    )
    cluster.save()
    return cluster


# -- stop -------------------------------------------------------------------------------------


def remove_webhook_configurations(cluster: Cluster) -> None:
    """Remove admission webhooks we (or Kopf) registered: a stale one pointing at a dead port
    with failurePolicy=Fail would block writes in a cluster that outlives us."""
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        if cluster.external:
            cluster.kubectl("delete", kind, KOPF_WEBHOOK_NAME, "--ignore-not-found", timeout=30)
            cluster.kubectl(
                "delete", kind, "-l", MANAGED_BY_LABEL, "--ignore-not-found", timeout=30
            )
        else:
            cluster.kubectl("delete", kind, "--all", "--ignore-not-found", timeout=30)


def _ours(record: ProcessRecord, run_dir: Path) -> bool:
    """Guard against a recycled pid: the live process must still run our command line, which
    always names a file in the cluster's run directory."""
    if not alive(record.pid):
        return False
    line = cmdline(record.pid)
    return record.args[0] in line and str(run_dir) in line


def _pod_pids(pods_dir: Path) -> list[int]:
    pids = []
    for pidfile in pods_dir.glob("*/*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pids.append(int(pidfile.read_text().strip()))
    return pids


def _stop_processes(cluster: Cluster, *, popens: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    ordered = [p.pid for p in reversed(cluster.processes) if _ours(p, cluster.run_dir)]
    stop_groups(ordered, grace=10)
    # The pod runner stops its pods on SIGTERM; this catches any it could not (e.g. SIGKILLed).
    stop_groups([pid for pid in _pod_pids(cluster.layout.pods) if alive(pid)], grace=2)
    for proc in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    remove_created_mount_points(cluster.layout.pods)


def mount_points_in_use() -> set[str]:
    """Every path that is a mount point in any process's mount namespace on this host."""
    in_use: set[str] = set()
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        with contextlib.suppress(OSError):
            for line in mountinfo.read_text().splitlines():
                fields = line.split()
                if len(fields) > 4:
                    # mountinfo escapes space, tab, newline and backslash as octal.
                    in_use.add(fields[4].encode().decode("unicode_escape"))
    return in_use


def remove_created_mount_points(pods_dir: Path) -> None:
    """Remove the mount points the pod runner had to create on the host, newest first, when
    they are still empty (a directory or file someone filled since is left alone) and no
    process anywhere has something mounted on them: removing a mount point detaches the mounts
    on it in other namespaces, e.g. a pod of another embedded cluster using the same path."""
    record = pods_dir / CREATED_MOUNT_POINTS
    try:
        paths = [Path(line) for line in record.read_text().splitlines() if line.strip()]
    except OSError:
        return
    in_use = mount_points_in_use()
    for path in reversed(paths):
        if str(path) in in_use:
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # fails, as wanted, when not empty
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()


def stop(cluster: Cluster, *, keep_files: bool = False) -> None:
    """Tear a cluster down: webhook configurations, then processes in reverse start order
    (SIGTERM, SIGKILL after 10 s), then its run directory. External clusters keep running;
    only what we registered in them is removed."""
    apiserver = next((p for p in cluster.processes if p.name == "kube-apiserver"), None)
    if cluster.external or (apiserver is not None and _ours(apiserver, cluster.run_dir)):
        with contextlib.suppress(subprocess.SubprocessError, OSError, StateError):
            remove_webhook_configurations(cluster)
    _stop_processes(cluster, popens=cluster.children)
    if not keep_files:
        if cluster.external:
            cluster.layout.state.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                cluster.run_dir.rmdir()
        else:
            shutil.rmtree(cluster.run_dir, ignore_errors=True)


def leftover_pids(cluster: Cluster) -> list[int]:
    """Pids of this cluster's processes (control plane and pods) that are still alive."""
    pids = [p.pid for p in cluster.processes if _ours(p, cluster.run_dir)]
    return pids + [pid for pid in _pod_pids(cluster.layout.pods) if alive(pid)]


def status(cluster: Cluster) -> dict[str, Any]:
    """Which processes are alive and whether the apiserver answers /readyz."""
    procs = {
        p.name: {"pid": p.pid, "alive": _ours(p, cluster.run_dir), "log": p.log}
        for p in cluster.processes
    }
    res = cluster.kubectl("get", "--raw=/readyz", timeout=15)
    return {
        "name": cluster.name,
        "server": cluster.server,
        "kubeconfig": str(cluster.kubeconfig),
        "external": cluster.external,
        "ready": res.returncode == 0 and res.stdout.strip() == "ok",
        "nodes": cluster.node_names,
        "crds": cluster.crds,
        "processes": procs,
    }


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[Cluster]:
    """`with running(...) as cluster:` start an embedded cluster and always stop it."""
    cluster = start_embedded(**kwargs)
    try:
        yield cluster
    finally:
        stop(cluster)
