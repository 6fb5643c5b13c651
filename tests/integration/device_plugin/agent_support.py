"""Helpers for the agent's cluster tests: NAA objects and token Secrets for software NAAs,
an in-process agent, waiting on NAA status."""

from __future__ import annotations

import base64
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from device_plugin.agent import Agent, AgentConfig
from naaice.api import GROUP, PLURAL_NAAS, VERSION


def create_naa_for(api: Any, *, runtime: Any, namespace: str, node: str) -> str:
    """Create the token Secret and a NetworkAttachedAccelerator for a running software NAA."""
    name = f"dp-{secrets.token_hex(4)}"
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": f"{name}-token"},
            "data": {"token": base64.b64encode(runtime.token.encode()).decode()},
        },
    )
    client.CustomObjectsApi(api).create_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL_NAAS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "NetworkAttachedAccelerator",
            "metadata": {"name": name},
            "spec": {
                "address": runtime.address,
                "management": {
                    "endpoint": runtime.url,
                    "tokenSecretRef": {"namespace": namespace, "name": f"{name}-token"},
                },
                "board": {"model": "alveo-u55c", "vendor": "AMD"},
                "nodes": [node],
            },
        },
    )
    return name


def delete_naa(api: Any, name: str) -> None:
    try:
        client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, PLURAL_NAAS, name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def naa_status(api: Any, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_cluster_custom_object(GROUP, VERSION, PLURAL_NAAS, name)
    return dict(obj.get("status") or {})


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


def wait_status(
    api: Any, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = naa_status(api, name)
        if predicate(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"NAA {name} status never matched; last: {status}")


@contextmanager
def running_agent(
    *, kubeconfig: Path, node: str, lease_namespace: str, **kw: Any
) -> Iterator[Agent]:
    kubelet_dir = Path(tempfile.mkdtemp(prefix="naadp-", dir="/tmp"))
    agent = Agent(
        AgentConfig(
            node_name=node,
            kubeconfig=kubeconfig,
            metrics_port=0,
            metrics_address="127.0.0.1",
            kubelet_dir=kubelet_dir,
            lease_namespace=lease_namespace,
            probe_interval_s=0.3,
            heartbeat_s=5.0,
            **kw,
        )
    )
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()
        shutil.rmtree(kubelet_dir, ignore_errors=True)
