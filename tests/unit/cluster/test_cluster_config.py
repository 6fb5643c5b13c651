"""Files and objects the embedded cluster generates, and the port picker (pure or local)."""

from __future__ import annotations

import socket
from pathlib import Path

from naaice_cluster import config
from naaice_cluster._procs import free_ports
from naaice_cluster.kube import Credentials


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_token_file_puts_groups_in_one_quoted_column() -> None:
    text = config.render_token_file([("t1", "admin", ["system:masters"]), ("t2", "u", [])])
    assert text == 't1,admin,admin,"system:masters"\nt2,u,u\n'


def test_kubeconfig_round_trips_to_credentials(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text(
        config.render_kubeconfig(
            name="c",
            server="https://127.0.0.1:6443",
            ca_file=tmp_path / "ca.crt",
            token="tok",
            user="admin",
        )
    )
    creds = Credentials.from_kubeconfig(path)
    assert (creds.host, creds.port, creds.token) == ("127.0.0.1", 6443, "tok")
    assert creds.ca_file == tmp_path / "ca.crt"


def test_fake_node_is_annotated_for_kwok_tainted_and_has_capacity() -> None:
    node = config.fake_node(name="naa-node-0", capacity={"cpu": "4", "pods": "10"})
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["spec"]["taints"] == [config.FAKE_NODE_TAINT]
    assert node["status"]["allocatable"] == {"cpu": "4", "pods": "10"}


def test_apiserver_runs_rbac_on_loopback_without_endpoint_reconciler(tmp_path: Path) -> None:
    layout = config.Layout(tmp_path)
    ports = config.Ports(1, 2, 3, 4, 5)
    args = config.apiserver_args(binary=Path("kube-apiserver"), layout=layout, ports=ports)
    assert "--authorization-mode=RBAC" in args
    assert "--advertise-address=127.0.0.1" in args
    assert "--endpoint-reconciler-type=none" in args
    assert "--secure-port=3" in args
    assert "--etcd-servers=http://127.0.0.1:1" in args
