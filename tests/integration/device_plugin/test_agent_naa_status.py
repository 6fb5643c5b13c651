"""On the embedded cluster with real software NAAs, the agent keeps NAA status truthful."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.integration.device_plugin.agent_support import (
    conditions,
    create_naa_for,
    delete_naa,
    running_agent,
    wait_status,
)

NODE = "agent-node-a"


def _all_true(status: dict[str, Any]) -> bool:
    c = conditions(status)
    return all(c.get(t, ("",))[0] == "True" for t in ("Ready", "Healthy", "Reachable"))


def test_naa_status_follows_a_runtime_being_stopped_and_restarted(
    cluster: Any, namespace: str, software_naa: Any
) -> None:
    runtime = software_naa()
    api = cluster.api_client()
    name = create_naa_for(api, runtime=runtime, namespace=namespace, node=NODE)
    restarted: subprocess.Popen[bytes] | None = None
    try:
        with running_agent(
            kubeconfig=cluster.kubeconfig, node=NODE, lease_namespace=namespace
        ) as agent:
            up = wait_status(api, name, _all_true)
            assert conditions(up)["Ready"] == ("True", "Idle")
            assert conditions(up)["Reachable"] == ("True", "ManagementAnswered")
            assert up["lastHeartbeat"]
            assert up["powerWatts"] > 0
            assert up["energyMicrojoules"] > 0
            assert agent.plugin is not None
            assert [c.healthy for c in agent.plugin.cards()] == [True]

            runtime.stop()
            down = wait_status(
                api, name, lambda s: conditions(s).get("Reachable", ("",))[0] == "False"
            )
            c = conditions(down)
            assert c["Reachable"] == ("False", "ConnectionRefused")
            assert c["Ready"] == ("False", "Unreachable")
            assert c["Healthy"] == ("Unknown", "ConnectionRefused")
            assert [c.healthy for c in agent.plugin.cards()] == [False]

            with runtime.log_path.open("ab") as log:
                restarted = subprocess.Popen(runtime.args, stdout=log, stderr=subprocess.STDOUT)
            again = wait_status(api, name, _all_true)
            assert conditions(again)["Ready"] == ("True", "Idle")
            assert again["lastHeartbeat"] > down["lastHeartbeat"]
            assert [c.healthy for c in agent.plugin.cards()] == [True]
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=10)
        delete_naa(api, name)
