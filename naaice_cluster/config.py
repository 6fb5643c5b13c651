"""Pure builders of the embedded cluster's files and command lines: kubeconfig, token file,
the fake Node object and each control-plane process's arguments. Called by `controlplane`;
tested without starting anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Annotation and taint that mark a node as one KWOK manages (and our pod runner serves).
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
FAKE_NODE_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
#: The toleration a pod needs to be scheduled onto a fake node.
FAKE_NODE_TOLERATION = {
    "key": "kwok.x-k8s.io/node",
    "operator": "Equal",
    "value": "fake",
    "effect": "NoSchedule",
}
SERVICE_CIDR = "10.0.0.0/24"
#: CN of the client certificate the apiserver presents to aggregated API servers.
FRONT_PROXY_CLIENT = "front-proxy-client"
NODE_IP = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    """The loopback TCP ports one embedded cluster listens on."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


@dataclass(frozen=True)
class Layout:
    """The files of one cluster run, all under `run_dir`."""

    run_dir: Path

    @property
    def pki(self) -> Path:
        return self.run_dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.run_dir / "etcd"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def pods(self) -> Path:
        return self.run_dir / "pods"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def tokens(self) -> Path:
        return self.pki / "tokens.csv"

    @property
    def state(self) -> Path:
        return self.run_dir / "state.json"

    def component_kubeconfig(self, component: str) -> Path:
        return self.run_dir / f"{component}.kubeconfig"


def render_kubeconfig(*, name: str, server: str, ca_file: Path, token: str, user: str) -> str:
    """A kubeconfig with one cluster, one token user and a current context, as YAML."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def render_token_file(users: list[tuple[str, str, list[str]]]) -> str:
    """The apiserver's `--token-auth-file` CSV: `token,user,uid,"group1,group2"` per line."""
    lines = []
    for token, user, groups in users:
        line = f"{token},{user},{user}"
        if groups:
            line += ',"' + ",".join(groups) + '"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def fake_node(
    *, name: str, capacity: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Node object KWOK manages: annotated, tainted, with capacity set at creation."""
    cap = capacity or {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1],
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "naaice.io/embedded": "true",
                **(labels or {}),
            },
        },
        "spec": {"taints": [dict(FAKE_NODE_TAINT)]},
        "status": {
            "capacity": dict(cap),
            "allocatable": dict(cap),
            "addresses": [
                {"type": "InternalIP", "address": NODE_IP},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def etcd_args(*, binary: Path, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=naaice",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=naaice={peer}",
        "--listen-metrics-urls=",
        # A throwaway test cluster: durability across power loss is not worth the fsyncs.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


GO_GC_PERCENT = "400"
"""GOGC for the control plane's Go processes. Go's default (100) collects whenever the heap
doubles; the apiserver then spent a quarter of its CPU in the allocator and collector under
bench/operator.py. Memory is what this machine has plenty of (a few hundred MB more per
process), CPU is what the cluster, the operator and the NAAs share (2 cores)."""


def go_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment for the control plane's processes: `base` with GOGC set, unless the
    user set it."""
    return {"GOGC": GO_GC_PERCENT, **base}


def apiserver_args(*, binary: Path, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        # Hosts without a default route need it explicit; loopback is also what we advertise.
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        # Loopback endpoints for the `kubernetes` Service are refused by validation.
        "--endpoint-reconciler-type=none",
        # Webhooks (and aggregated APIs) referenced by Service are called at an EndpointSlice
        # address, not at the ClusterIP: there is no kube-proxy to route a ClusterIP. The
        # apiserver hands the same service resolver to the admission webhook plugins.
        "--enable-aggregator-routing=true",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--token-auth-file={layout.tokens}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki / 'sa.key'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        f"--cert-dir={pki}",
        # Request-header (front proxy) auth: API aggregation works, and components that read
        # kube-system/extension-apiserver-authentication find a CA there.
        f"--requestheader-client-ca-file={pki / 'ca.crt'}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / (FRONT_PROXY_CLIENT + '.crt')}",
        f"--proxy-client-key-file={pki / (FRONT_PROXY_CLIENT + '.key')}",
    ]


def controller_manager_args(*, binary: Path, layout: Layout, ports: Ports) -> list[str]:
    kc = layout.component_kubeconfig("kube-controller-manager")
    return [
        str(binary),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        f"--service-account-private-key-file={layout.pki / 'sa.key'}",
        f"--root-ca-file={layout.pki / 'ca.crt'}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.pki / 'kcm'}",
        "--profiling=false",
    ]


def scheduler_args(*, binary: Path, layout: Layout, ports: Ports) -> list[str]:
    kc = layout.component_kubeconfig("kube-scheduler")
    return [
        str(binary),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.pki / 'scheduler'}",
        "--profiling=false",
    ]


def kwok_args(*, binary: Path, layout: Layout, stages: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={'='.join(FAKE_NODE_ANNOTATION)}",
        "--manage-nodes-with-label-selector=",
        "--manage-single-node=",
        f"--cidr={SERVICE_CIDR}",
        f"--node-ip={NODE_IP}",
        "--node-lease-duration-seconds=40",
    ]
