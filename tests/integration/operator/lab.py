"""A small lab for operator tests: real software NAAs registered as NetworkAttachedAccelerator
objects, a Bitstream whose artifact they can flash, NAAJobs, and `naaice operator run`
processes (real processes, so tests can SIGKILL them). Used by tests/integration/operator and
bench/operator.py.

Cluster-scoped objects (NAAs, Bitstreams) get names and a board model unique to the lab, so
jobs of one lab can only ever be placed on that lab's NAAs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from naaice_cluster.config import FAKE_NODE_TOLERATION
from naaice_cluster.controlplane import Cluster
from tests.support.naa import RunningNAA, SoftwareNAAFactory, naaice_executable

JSON = dict[str, Any]
REPO = Path(__file__).resolve().parents[3]
TEST_KERNELS = REPO / "examples" / "bitstreams" / "test-kernels.yaml"
G, V = "naaice.io", "v1alpha1"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_conditions(ok: bool = True) -> list[JSON]:
    status = "True" if ok else "False"
    return [
        {
            "type": t,
            "status": status,
            "reason": "Probed" if ok else "Down",
            "message": "" if ok else "test says so",
            "lastTransitionTime": _now(),
        }
        for t in ("Ready", "Healthy", "Reachable")
    ]


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    identity: str

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Lab:
    cluster: Cluster
    namespace: str
    naa_factory: SoftwareNAAFactory
    workdir: Path
    api: k8s.ApiClient = field(init=False)
    board: str = field(init=False)
    naas: dict[str, RunningNAA] = field(default_factory=dict)
    bitstream: str = ""
    operators: list[OperatorProcess] = field(default_factory=list)
    _cluster_objects: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = self.cluster.api_client()
        self.custom = k8s.CustomObjectsApi(self.api)
        self.core = k8s.CoreV1Api(self.api)
        self.coord = k8s.CoordinationV1Api(self.api)
        self.tag = secrets.token_hex(3)
        self.board = f"sw-{self.tag}"

    # -- NAAs and bitstreams ------------------------------------------------------------------

    def add_naas(
        self, count: int, *, flash_seconds: float = 0.1, extra_args: tuple[str, ...] = ()
    ) -> list[str]:
        names = []
        tokens: dict[str, str] = {}
        for _ in range(count):
            name = f"l{self.tag}-{len(self.naas)}"
            naa = self.naa_factory(name=name, flash_seconds=flash_seconds, extra_args=extra_args)
            self.naas[name] = naa
            tokens[name] = naa.token
            names.append(name)
        self._upsert_secret(tokens)
        for name in names:
            naa = self.naas[name]
            self.create_naa_object(name, naa)
        return names

    def create_naa_object(self, name: str, naa: RunningNAA, *, ready: bool = True) -> None:
        body = {
            "apiVersion": f"{G}/{V}",
            "kind": "NetworkAttachedAccelerator",
            "metadata": {"name": name},
            "spec": {
                "address": naa.address,
                "port": 4791,
                "cmPort": 12345,
                "management": {
                    "endpoint": naa.url,
                    "tokenSecretRef": {
                        "namespace": self.namespace,
                        "name": "naa-tokens",
                        "key": name,
                    },
                },
                "board": {"model": self.board, "vendor": "naaice-test"},
                "resources": {
                    "lut": 1000,
                    "ff": 1000,
                    "dsp": 10,
                    "bram": 10,
                    "uram": 1,
                    "memoryBytes": 1 << 30,
                },
            },
        }
        self.custom.create_cluster_custom_object(G, V, "networkattachedaccelerators", body)
        self._cluster_objects.append(("networkattachedaccelerators", name))
        self.set_naa_ready(name, ready)

    def set_naa_ready(self, name: str, ok: bool) -> None:
        self.custom.patch_cluster_custom_object_status(
            G,
            V,
            "networkattachedaccelerators",
            name,
            {"status": {"conditions": ready_conditions(ok)}},
        )

    def _upsert_secret(self, tokens: dict[str, str]) -> None:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in tokens.items()}
        try:
            self.core.create_namespaced_secret(
                self.namespace, {"metadata": {"name": "naa-tokens"}, "data": data}
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_secret("naa-tokens", self.namespace, {"data": data})

    def add_bitstream(
        self,
        *,
        artifact: Path = TEST_KERNELS,
        digest: str | None = None,
        flash_seconds: float = 0.1,
    ) -> str:
        name = f"l{self.tag}-tk"
        digest = digest or "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
        body = {
            "apiVersion": f"{G}/{V}",
            "kind": "Bitstream",
            "metadata": {"name": name},
            "spec": {
                "functions": [
                    {"name": "add1", "fnCode": 1, "inputParams": 1},
                    {"name": "add2", "fnCode": 2, "inputParams": 1},
                    {"name": "noop", "fnCode": 3, "inputParams": 1},
                ],
                "compatibleBoards": [self.board],
                "artifact": {"uri": artifact.as_uri()},
                "digest": digest,
                "flashSeconds": flash_seconds,
            },
        }
        self.custom.create_cluster_custom_object(G, V, "bitstreams", body)
        self._cluster_objects.append(("bitstreams", name))
        self.bitstream = name
        return name

    # -- jobs -----------------------------------------------------------------------------------

    def job_body(
        self,
        name: str,
        *,
        command: list[str],
        function: str = "add1",
        count: int = 1,
        replicas: int = 1,
        backoff_limit: int = 0,
        env: Iterable[JSON] = (),
        **spec: Any,
    ) -> JSON:
        return {
            "apiVersion": f"{G}/{V}",
            "kind": "NAAJob",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "naas": [{"name": "main", "function": function, "count": count}],
                "replicas": replicas,
                "backoffLimit": backoff_limit,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "tolerations": [FAKE_NODE_TOLERATION],
                        "terminationGracePeriodSeconds": 2,
                        "containers": [
                            {
                                "name": "main",
                                "image": "naaice.invalid/host",
                                "command": command,
                                "env": list(env),
                            }
                        ],
                    }
                },
                **spec,
            },
        }

    def create_job(self, name: str, **kwargs: Any) -> JSON:
        body = self.job_body(name, **kwargs)
        created: JSON = self.custom.create_namespaced_custom_object(
            G, V, self.namespace, "naajobs", body
        )
        return created

    def job(self, name: str) -> JSON | None:
        try:
            got: JSON = self.custom.get_namespaced_custom_object(
                G, V, self.namespace, "naajobs", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return got

    def jobs(self) -> list[JSON]:
        items: list[JSON] = self.custom.list_namespaced_custom_object(
            G, V, self.namespace, "naajobs"
        )["items"]
        return items

    def delete_job(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.custom.delete_namespaced_custom_object(G, V, self.namespace, "naajobs", name)

    @staticmethod
    def condition(job: JSON | None, kind: str) -> JSON | None:
        for c in ((job or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == kind:
                return dict(c)
        return None

    def is_true(self, name: str, kind: str) -> bool:
        c = self.condition(self.job(name), kind)
        return c is not None and c["status"] == "True"

    def terminal(self, job: JSON) -> str | None:
        for kind in ("Succeeded", "Failed"):
            c = self.condition(job, kind)
            if c is not None and c["status"] == "True":
                return kind
        return None

    def leases(self) -> list[JSON]:
        out = []
        for item in self.coord.list_namespaced_lease(
            self.namespace, label_selector="naaice.io/naa"
        ).items:
            out.append(self.api.sanitize_for_serialization(item))
        return out

    def pods(self, job: str | None = None) -> list[JSON]:
        selector = f"naaice.io/naajob={job}" if job else "naaice.io/naajob"
        return [
            self.api.sanitize_for_serialization(p)
            for p in self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        ]

    def events(self, name: str) -> list[JSON]:
        return [
            self.api.sanitize_for_serialization(e)
            for e in self.core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.name={name}"
            ).items
        ]

    # -- operators -------------------------------------------------------------------------------

    def start_operator(
        self,
        *,
        identity: str = "op-0",
        peering: bool = False,
        kubeconfig: Path | None = None,
        extra: Iterable[str] = (),
        env: dict[str, str] | None = None,
        verbose: bool = True,
    ) -> OperatorProcess:
        log = self.workdir / f"operator-{identity}-{len(self.operators)}.log"
        args = [
            naaice_executable(),
            "operator",
            "run",
            "--namespace",
            self.namespace,
            "--lease-namespace",
            self.namespace,
            "--identity",
            identity,
            "--peering" if peering else "--standalone",
            *(("--verbose",) if verbose else ()),
            *extra,
        ]
        proc_env = {k: v for k, v in os.environ.items() if not k.startswith("NAAICE_")}
        proc_env["KUBECONFIG"] = str(kubeconfig or self.cluster.kubeconfig)
        proc_env["PYTHONUNBUFFERED"] = "1"
        proc_env.update(env or {})
        with log.open("ab") as out:
            process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=proc_env, start_new_session=True
            )
        op = OperatorProcess(process=process, log=log, identity=identity)
        self.operators.append(op)
        return op

    def webhook_args(self) -> list[str]:
        """Flags for an operator with its admission webhook on a free loopback port, serving a
        certificate issued from the cluster's CA."""
        import socket

        from naaice_cluster.pki import issue_serving_cert

        pki = self.cluster.layout.pki
        certs = issue_serving_cert(
            ca_cert=pki / "ca.crt", ca_key=pki / "ca.key", out_dir=self.workdir / "webhook-pki"
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return [
            "--webhook-port",
            str(port),
            "--webhook-cert",
            str(certs.cert),
            "--webhook-key",
            str(certs.key),
            "--webhook-ca",
            str(certs.ca),
        ]

    # -- waiting -----------------------------------------------------------------------------------

    def wait(
        self,
        what: str,
        predicate: Callable[[], Any],
        *,
        timeout: float = 60.0,
        interval: float = 0.2,
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(op.output()[-6000:] for op in self.operators)
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
            time.sleep(interval)

    def wait_terminal(self, name: str, *, timeout: float = 60.0) -> JSON:
        job: JSON = self.wait(
            f"NAAJob {name} to finish",
            lambda: (j := self.job(name)) is not None and self.terminal(j) and j,
            timeout=timeout,
        )
        return job

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        for op in self.operators:
            op.kill()
        for plural, name in reversed(self._cluster_objects):
            with contextlib.suppress(ApiException):
                self.custom.delete_cluster_custom_object(G, V, plural, name)
        # A SIGKILLed operator cannot remove its webhook registration.
        for kind in ("mutating", "validating"):
            self.cluster.kubectl(
                "delete", f"{kind}webhookconfiguration", "auto.kopf.dev", "--ignore-not-found"
            )
        # Jobs keep a finalizer while no operator runs: drop them so the namespace can go.
        for job in self.jobs():
            with contextlib.suppress(ApiException):
                self.custom.patch_namespaced_custom_object(
                    G,
                    V,
                    self.namespace,
                    "naajobs",
                    job["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )
        self.api.close()


class SensorRecorder:
    """Samples every lab NAA's `/v1/sensors` at 20 Hz in a thread, independently of the
    operator, so a test can recompute a job's energy from the NAAs' own counters."""

    def __init__(self, naas: dict[str, RunningNAA], period: float = 0.05) -> None:
        import threading

        self.naas = naas
        self.period = period
        self.samples: dict[str, list[Any]] = {n: [] for n in naas}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from naaice.energy import Sample

        while not self._stop.is_set():
            for name, naa in self.naas.items():
                status, doc = naa.get("/v1/sensors")
                if status == 200:
                    self.samples[name].append(
                        Sample(
                            t_ns=int(doc["timestampNs"]),
                            power_w=float(doc["powerWatts"]),
                            energy_uj=int(doc["energyMicrojoules"]),
                        )
                    )
            self._stop.wait(self.period)

    def __enter__(self) -> SensorRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rfc3339_ns(value: str) -> int:
    head, _, frac = value.rstrip("Z").partition(".")
    secs = int(datetime.fromisoformat(head + "+00:00").timestamp())
    return secs * 1_000_000_000 + int((frac + "000000000")[:9] if frac else "0")


def spec_probe_command(out_dir: Path) -> list[str]:
    """A host program that records the NAA Spec it sees (env and file) and exits 0."""
    script = (
        "import json,os,pathlib,sys;"
        f"d=pathlib.Path({str(out_dir)!r});d.mkdir(parents=True,exist_ok=True);"
        "f=pathlib.Path('/etc/naaice/naa-spec.json');"
        "rec={'NAA_SPEC':os.environ.get('NAA_SPEC'),"
        "'JSON':os.environ.get('NAAICE_NAA_SPEC_JSON'),"
        "'FILE':f.read_text() if f.exists() else None,"
        "'POD':os.environ.get('HOSTNAME','')};"
        "(d/(os.environ.get('PROBE_NAME','pod')+'.json')).write_text(json.dumps(rec))"
    )
    return [sys.executable, "-c", script]


def heartbeat_command(out_dir: Path, seconds: float) -> list[str]:
    """A host program that appends a wall-clock heartbeat every 50 ms for `seconds`, to a file
    named after its pod, with its NAA_SPEC on the first line: the intervals during which each
    pod really ran on its NAAs, for exclusivity checks."""
    script = (
        "import os,pathlib,time;"
        f"d=pathlib.Path({str(out_dir)!r});d.mkdir(parents=True,exist_ok=True);"
        "p=d/(os.environ.get('HOSTNAME') or str(os.getpid()));"
        "f=p.open('a');f.write(os.environ.get('NAA_SPEC','')+'\\n');f.flush();"
        f"end=time.time()+{seconds}\n"
        "while True:\n"
        "    f.write(repr(time.time())+'\\n');f.flush()\n"
        "    if time.time()>=end: break\n"
        "    time.sleep(0.05)\n"
    )
    return [sys.executable, "-c", script]


def overlapping_holders(out_dir: Path) -> list[str]:
    """Pairs of pods that ran on the same NAA address at the same time (should be none)."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for path in out_dir.glob("*"):
        lines = path.read_text().splitlines()
        if len(lines) < 2:
            continue
        beats = [float(x) for x in lines[1:] if x.strip()]
        for entry in lines[0].split(","):
            address = entry.split(":")[0]
            spans.setdefault(address, []).append((min(beats), max(beats), path.name))
    problems = []
    for address, items in spans.items():
        items.sort()
        for (s1, e1, p1), (s2, e2, p2) in itertools.pairwise(items):
            if s2 <= e1:
                problems.append(
                    f"{address}: {p1} [{s1:.3f},{e1:.3f}] overlaps {p2} [{s2:.3f},{e2:.3f}]"
                )
    return problems


def sleep_command(seconds: float, *, exit_code: int = 0) -> list[str]:
    return [sys.executable, "-c", f"import time,sys;time.sleep({seconds});sys.exit({exit_code})"]


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
