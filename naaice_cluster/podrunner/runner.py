"""The pod runner: the embedded cluster's stand-in for kubelet + a container runtime on the KWOK
fake nodes. It watches the pods bound to its nodes, runs each container's command as a local
process (own session, private mount + UTS namespace when permitted, the pod's env and volumes),
writes phase/conditions/container statuses to the pod's status subresource, restarts containers
per restartPolicy, keeps logs in files, and on deletion kills the processes and finalises the
deletion as kubelet does. Started by `controlplane` as `python -m naaice_cluster.podrunner`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from naaice_cluster.config import NODE_IP
from naaice_cluster.kube import ApiError, Kube
from naaice_cluster.podrunner._exec import launch_argv
from naaice_cluster.podrunner.envresolve import (
    ContainerConfigError,
    command_line,
    resolve_env,
)
from naaice_cluster.podrunner.status import ContainerRecord, Terminated, now, pod_status
from naaice_cluster.podrunner.volumes import materialise, volume_files

JSON = dict[str, Any]
log = logging.getLogger("naaice.podrunner")
_BACKOFF_START, _BACKOFF_MAX = 1.0, 30.0
#: How long a started container may take to end before its Running status is written.
_SETTLE = 0.1
#: File in the pods dir listing mount points created on the host (see `_exec.create_recorded`).
CREATED_MOUNT_POINTS = "created-mount-points"


def namespaces_available() -> bool:
    """True when this process may create private mount + UTS namespaces (root on Linux)."""
    if shutil.which("unshare") is None:
        return False
    res = subprocess.run(
        ["unshare", "--mount", "--uts", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    return res.returncode == 0


@dataclass(frozen=True)
class RunnerConfig:
    nodes: tuple[str, ...]
    pods_dir: Path
    apiserver_port: int
    use_namespaces: bool
    python: str = sys.executable


def base_env(*, pod_name: str, apiserver_port: int, python: str) -> dict[str, str]:
    """What the "runtime" provides before the pod's own env: the venv's bin on PATH (images are
    ignored, so this is the software the container gets) and in-cluster API discovery."""
    venv_bin = str(Path(python).parent)
    port = str(apiserver_port)
    return {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME": pod_name,
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "KUBERNETES_SERVICE_HOST": NODE_IP,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{NODE_IP}:{port}",
    }


class PodWorker(threading.Thread):
    """Runs one pod's containers from start to finish (or deletion)."""

    def __init__(self, runner: Runner, pod: JSON) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.runner = runner
        self.pod = pod
        self.ns, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = runner.config.pods_dir / f"{self.ns}_{self.pod_name}_{self.uid}"
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init = [
            ContainerRecord(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []
        ]
        self.containers = [
            ContainerRecord(c["name"], c.get("image", "")) for c in spec["containers"]
        ]
        self.specs: dict[str, JSON] = {
            c["name"]: c for c in [*(spec.get("initContainers") or []), *spec["containers"]]
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_event = threading.Event()
        self.grace = 30.0
        self.finalize = False
        self.start_time = now()
        self.sandbox_ready = False
        self.message = ""
        self.finished = threading.Event()
        self._last_status: str = ""

    # -- control from the runner ----------------------------------------------------------

    def terminate(self, *, grace: float, finalize: bool) -> None:
        self.grace = min(self.grace, grace) if self.stop_event.is_set() else grace
        self.finalize = self.finalize or finalize
        self.stop_event.set()

    # -- status ---------------------------------------------------------------------------

    def report(self) -> None:
        status = pod_status(
            restart_policy=self.restart_policy,
            init=self.init,
            containers=self.containers,
            host_ip=NODE_IP,
            start_time=self.start_time,
            sandbox_ready=self.sandbox_ready,
            transition_time=now(),
            message=self.message,
        )
        # Skip writes that would change nothing but the timestamps.
        fingerprint = json.dumps(
            {
                **status,
                "conditions": [
                    {k: v for k, v in c.items() if k != "lastTransitionTime"}
                    for c in status["conditions"]
                ],
            },
            sort_keys=True,
        )
        if fingerprint == self._last_status:
            return
        try:
            self.runner.kube.merge_patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}/status", {"status": status}
            )
            self._last_status = fingerprint
        except ApiError as exc:
            if exc.status == 404:
                self.stop_event.set()
            else:
                log.warning("status of %s/%s: %s", self.ns, self.pod_name, exc)
        except OSError as exc:
            log.warning("status of %s/%s: %s", self.ns, self.pod_name, exc)

    # -- preparing ------------------------------------------------------------------------

    def _lookup(self, kind: str, namespace: str, name: str) -> JSON | None:
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        try:
            return self.runner.kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _token_for(self, source: JSON) -> str:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec: JSON = {
            "expirationSeconds": int(source.get("expirationSeconds", 3607)),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.pod_name,
                "uid": self.uid,
            },
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        answer = self.runner.kube.create(
            f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(answer["status"]["token"])

    def _prepare_volumes(self) -> dict[str, Path]:
        sources: dict[str, Path] = {}
        for vol in self.pod["spec"].get("volumes") or []:
            if "hostPath" in vol:
                path = Path(vol["hostPath"]["path"])
                if vol["hostPath"].get("type") == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                sources[vol["name"]] = path
                continue
            files = volume_files(
                volume=vol, pod=self.pod, lookup=self._lookup, token_for=self._token_for
            )
            target = self.dir / "volumes" / vol["name"]
            materialise(directory=target, files=files)
            sources[vol["name"]] = target
        return sources

    def _exec_spec(self, container: JSON, volumes: dict[str, Path], argv: list[str]) -> JSON:
        mounts = []
        for m in container.get("volumeMounts") or []:
            if m["name"] not in volumes:
                raise ContainerConfigError(f"volumeMount {m['name']!r} names no volume of the pod")
            source = volumes[m["name"]]
            if m.get("subPath"):
                source = source / m["subPath"]
            mounts.append(
                {
                    "source": str(source),
                    "target": m["mountPath"],
                    "readOnly": bool(m.get("readOnly")),
                }
            )
        work = container.get("workingDir") or str(self.dir / "work")
        Path(work).mkdir(parents=True, exist_ok=True)
        return {
            "namespaces": self.runner.config.use_namespaces,
            "mounts": mounts,
            "hostname": self.pod_name[:63],
            "workingDir": work,
            "argv": argv,
            "createdMountPoints": str(self.runner.config.pods_dir / CREATED_MOUNT_POINTS),
        }

    def _fallback_mount_root(self, name: str, mounts: list[JSON]) -> str:
        """Without namespaces the mountPaths cannot be made visible: expose a per-container
        tree of symlinks instead and tell the process where it is (NAAICE_MOUNT_ROOT)."""
        root = self.dir / "rootfs" / name
        for m in mounts:
            link = root / m["target"].lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(m["source"])
        return str(root)

    # -- running --------------------------------------------------------------------------

    def _start(self, rec: ContainerRecord, volumes: dict[str, Path]) -> None:
        container = self.specs[rec.name]
        base = base_env(
            pod_name=self.pod_name,
            apiserver_port=self.runner.config.apiserver_port,
            python=self.runner.config.python,
        )
        env = resolve_env(pod=self.pod, container=container, lookup=self._lookup, base=base)
        argv = command_line(container=container, env=env)
        spec = self._exec_spec(container, volumes, argv)
        if not spec["namespaces"] and spec["mounts"]:
            env["NAAICE_MOUNT_ROOT"] = self._fallback_mount_root(rec.name, spec["mounts"])
        try:
            cmd = launch_argv(spec)
        except OSError as exc:  # a mount point that cannot be created
            cmd = ["/bin/sh", "-c", 'echo "$1" >&2; exit 128', "naaice-launch"]
            cmd.append(f"naaice pod runner: preparing the container failed: {exc}")
        logfile = self.dir / f"{rec.name}.log"
        with logfile.open("ab") as fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        (self.dir / f"{rec.name}.pid").write_text(str(proc.pid))
        self.procs[rec.name] = proc
        rec.pid = proc.pid
        rec.waiting_reason, rec.waiting_message = None, ""
        rec.running_since = now()
        if rec.terminated is not None:
            rec.last_terminated, rec.terminated = rec.terminated, None

    def _reap(self, rec: ContainerRecord) -> bool:
        """Record the container's exit if its process ended; True when it did."""
        proc = self.procs.get(rec.name)
        if proc is None or proc.poll() is None:
            return False
        code = proc.returncode
        sig = -code if code < 0 else None
        rec.terminated = Terminated(
            exit_code=128 + sig if sig else code,
            started_at=rec.running_since or now(),
            finished_at=now(),
            signal=sig,
            container_id=rec.container_id,
        )
        rec.running_since = None
        rec.history.append(rec.terminated.exit_code)
        del self.procs[rec.name]
        (self.dir / f"{rec.name}.pid").unlink(missing_ok=True)
        return True

    def _should_restart(self, rec: ContainerRecord) -> bool:
        assert rec.terminated is not None
        if self.restart_policy == "Always":
            return True
        return self.restart_policy == "OnFailure" and rec.terminated.exit_code != 0

    def _kill_all(self, grace: float) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.procs and time.monotonic() < deadline:
            for rec in [*self.init, *self.containers]:
                self._reap(rec)
            time.sleep(0.05)
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in list(self.procs.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for rec in [*self.init, *self.containers]:
            self._reap(rec)

    def _prepare(self) -> dict[str, Path] | None:
        """Materialise volumes, retrying config errors (e.g. a ConfigMap created later) like
        kubelet does; None when the pod is deleted meanwhile."""
        while not self.stop_event.is_set():
            try:
                volumes = self._prepare_volumes()
                for c in [*self.init, *self.containers]:
                    spec = self.specs[c.name]
                    resolve_env(pod=self.pod, container=spec, lookup=self._lookup)
                    command_line(container=spec, env={})
                    for m in spec.get("volumeMounts") or []:
                        if m["name"] not in volumes:
                            raise ContainerConfigError(
                                f"volumeMount {m['name']!r} names no volume of the pod"
                            )
            except ContainerConfigError as exc:
                first = (self.init or self.containers)[0]
                first.waiting_reason, first.waiting_message = "CreateContainerConfigError", str(exc)
                self.report()
                self.stop_event.wait(2.0)
                continue
            self.sandbox_ready = True
            for c in [*self.init, *self.containers]:
                c.waiting_reason, c.waiting_message = "ContainerCreating", ""
            return volumes
        return None

    def _run_until_done(self, records: list[ContainerRecord], volumes: dict[str, Path]) -> bool:
        """Run `records` (all at once) until none will run again; False when stopped."""
        restart_at: dict[str, float] = {}
        backoff: dict[str, float] = {}
        for rec in records:
            self._start(rec, volumes)
        # Like kubelet's status manager, write the latest status rather than every step: a
        # container that ends within the first moments goes from Pending straight to its end
        # in one write (three writes per short pod were half of the API load in
        # bench/operator.py), a longer one is reported Running after _SETTLE seconds.
        deadline = time.monotonic() + _SETTLE
        while time.monotonic() < deadline and not self.stop_event.wait(_SETTLE / 20):
            if all(p.poll() is not None for p in self.procs.values()):
                break
        first = True
        while not self.stop_event.is_set():
            changed = False
            for rec in records:
                if self._reap(rec):
                    changed = True
                    if self._should_restart(rec):
                        delay = backoff.get(rec.name, _BACKOFF_START)
                        backoff[rec.name] = min(delay * 2, _BACKOFF_MAX)
                        restart_at[rec.name] = time.monotonic() + delay
            for name, due in list(restart_at.items()):
                if time.monotonic() >= due and not self.stop_event.is_set():
                    rec = next(r for r in records if r.name == name)
                    rec.restart_count += 1
                    self._start(rec, volumes)
                    del restart_at[name]
                    changed = True
            if changed or first:
                first = False
                self.report()
            if not self.procs and not restart_at:
                return True
            self.stop_event.wait(0.1)
        return False

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: the runner failed", self.ns, self.pod_name)
            self.message = "the embedded pod runner failed; see its log"
            self._kill_all(0)
            self.report()
        finally:
            self.finished.set()

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        volumes = self._prepare()
        if volumes is not None:
            ok = True
            for rec in self.init:
                ok = self._run_until_done([rec], volumes)
                if not ok or (rec.terminated and rec.terminated.exit_code != 0):
                    ok = False
                    break
            if ok:
                self._run_until_done(self.containers, volumes)
        if self.stop_event.is_set():
            self._kill_all(self.grace)
            if self.finalize:
                self.report()
                self.runner.finalize_deletion(self.ns, self.pod_name, self.uid)
            return
        self.report()


class Runner:
    """Watches the pods of its nodes and keeps one `PodWorker` per running pod."""

    def __init__(self, *, kube: Kube, config: RunnerConfig) -> None:
        self.kube = kube
        self.config = config
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._listed: set[str] = set()

    def finalize_deletion(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's last word on a gracefully deleted pod: delete it for good."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            self.kube.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("final delete of %s/%s: %s", namespace, name, exc)

    def handle(self, event_type: str, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if event_type == "DELETED":
                if worker is not None:
                    worker.terminate(grace=0, finalize=False)
                return
            if meta.get("deletionTimestamp"):
                grace = float(meta.get("deletionGracePeriodSeconds", 30))
                if worker is not None and not worker.finished.is_set():
                    worker.terminate(grace=grace, finalize=True)
                else:
                    threading.Thread(
                        target=self.finalize_deletion,
                        args=(meta["namespace"], meta["name"], uid),
                        daemon=True,
                    ).start()
                return
            if worker is None and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()

    def _watch_node(self, node: str) -> None:
        selector = f"spec.nodeName={node}"
        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    listing = self.kube.get("/api/v1/pods", fieldSelector=selector)
                    rv = str(listing["metadata"]["resourceVersion"])
                    present = set()
                    for pod in listing.get("items", []):
                        present.add(pod["metadata"]["uid"])
                        self.handle("ADDED", pod)
                    self._forget_missing(node, present)
                    self._mark_listed(node)
                for event in self.kube.watch(
                    "/api/v1/pods",
                    fieldSelector=selector,
                    resourceVersion=rv,
                    allowWatchBookmarks="true",
                ):
                    if self.stop.is_set():
                        return
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        rv = None
                        break
                    rv = str(obj["metadata"]["resourceVersion"])
                    if event["type"] != "BOOKMARK":
                        self.handle(event["type"], obj)
            except ApiError as exc:
                if exc.status == 410:
                    rv = None
                else:
                    log.warning("watching pods of %s: %s", node, exc)
                    self.stop.wait(1.0)
            except (OSError, ValueError) as exc:
                log.warning("watching pods of %s: %s", node, exc)
                rv = None
                self.stop.wait(1.0)

    def _forget_missing(self, node: str, present: set[str]) -> None:
        with self.lock:
            for uid, worker in self.workers.items():
                if worker.pod["spec"].get("nodeName") == node and uid not in present:
                    worker.terminate(grace=0, finalize=False)

    def _mark_listed(self, node: str) -> None:
        self._listed.add(node)
        if self._listed >= set(self.config.nodes):
            (self.config.pods_dir / ".ready").touch()

    def run(self) -> None:
        """Watch until `stop` is set, then kill every pod's processes (briefly graceful)."""
        self.config.pods_dir.mkdir(parents=True, exist_ok=True)
        for node in self.config.nodes:
            threading.Thread(target=self._watch_node, args=(node,), daemon=True).start()
        self.stop.wait()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop_event.set()
            worker.grace = min(worker.grace, 3.0)
        for worker in workers:
            worker.finished.wait(10)
