"""`naaice agent …`: run the node agent (`run`) and list what it would advertise (`cards`).

Mounted by `naaice_cli.main`. Heavy imports (grpc, kubernetes, prometheus_client, aiohttp)
happen inside the commands so `naaice --help` stays fast. Every flag has an env twin
`NAAICE_<FLAG>` (e.g. `--metrics-port` / `NAAICE_METRICS_PORT`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="The node agent: kubelet device plugin, NAA health, energy exporter.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _env(flag: str) -> str:
    return "NAAICE_" + flag.upper().replace("-", "_")


@app.command()
def run(  # noqa: PLR0917 - typer reads every option from this signature
    node_name: Annotated[
        str,
        typer.Option(envvar=_env("node-name"), help="The node this agent runs on (spec.nodeName)."),
    ],
    kubelet_dir: Annotated[
        Path,
        typer.Option(
            envvar=_env("kubelet-dir"),
            help="The kubelet's device-plugin directory (holds kubelet.sock).",
        ),
    ] = Path("/var/lib/kubelet/device-plugins"),
    metrics_port: Annotated[
        int, typer.Option(envvar=_env("metrics-port"), help="Prometheus /metrics port (0: any).")
    ] = 9400,
    metrics_address: Annotated[
        str, typer.Option(envvar=_env("metrics-address"), help="Address /metrics listens on.")
    ] = "0.0.0.0",
    sample_hz: Annotated[
        float, typer.Option(envvar=_env("sample-hz"), help="Sensor sampling rate per NAA.")
    ] = 10.0,
    card_profile: Annotated[
        str,
        typer.Option(
            envvar=_env("card-profile"),
            help="emulated (cards backed by software NAAs) or real (Xilinx cards from sysfs).",
        ),
    ] = "emulated",
    lease_namespace: Annotated[
        str,
        typer.Option(
            envvar=_env("lease-namespace"), help="Namespace of the allocation Leases (operator's)."
        ),
    ] = "naaice-system",
    probe_interval: Annotated[
        float, typer.Option(envvar=_env("probe-interval"), help="Seconds between health probes.")
    ] = 1.0,
    heartbeat: Annotated[
        float,
        typer.Option(
            envvar=_env("heartbeat"), help="Seconds between status writes when nothing changed."
        ),
    ] = 10.0,
    settle: Annotated[
        float,
        typer.Option(
            envvar=_env("settle"),
            help="Seconds energy waits before attribution, so late Lease events split exactly.",
        ),
    ] = 1.0,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(envvar=_env("kubeconfig"), help="Kubeconfig (default: in-cluster)."),
    ] = None,
    sysfs_root: Annotated[
        Path, typer.Option(envvar=_env("sysfs-root"), help="sysfs root for the real profile.")
    ] = Path("/sys"),
    cdi_dir: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("cdi-dir"), help="Write a CDI spec here and return CDI device names."
        ),
    ] = None,
    device_plugin: Annotated[
        bool,
        typer.Option(
            "--device-plugin/--no-device-plugin",
            envvar=_env("device-plugin"),
            help="Serve the kubelet device plugin (off where no kubelet runs).",
        ),
    ] = True,
    claim_unassigned: Annotated[
        bool,
        typer.Option(
            "--claim-unassigned/--no-claim-unassigned",
            envvar=_env("claim-unassigned"),
            help="Also manage NAAs without spec.nodes (run this on exactly one agent).",
        ),
    ] = False,
    mqtt_broker: Annotated[
        str | None,
        typer.Option(
            envvar=_env("mqtt-broker"),
            help="host:port of an MQTT broker the SBCs publish sensors to (replaces HTTP polling).",
        ),
    ] = None,
    mqtt_topic_prefix: Annotated[
        str,
        typer.Option(
            envvar=_env("mqtt-topic-prefix"), help="Topics are <prefix>/<naa>/sensors (QoS 1)."
        ),
    ] = "naaice",
    log_level: Annotated[str, typer.Option(envvar=_env("log-level"))] = "INFO",
) -> None:
    """Run the node agent until SIGTERM."""
    from device_plugin.agent import Agent, AgentConfig
    from device_plugin.errors import AgentConfigError

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = AgentConfig(
            node_name=node_name,
            kubelet_dir=kubelet_dir,
            metrics_port=metrics_port,
            metrics_address=metrics_address,
            sample_hz=sample_hz,
            card_profile=card_profile,
            lease_namespace=lease_namespace,
            probe_interval_s=probe_interval,
            heartbeat_s=heartbeat,
            settle_s=settle,
            kubeconfig=kubeconfig,
            sysfs_root=sysfs_root,
            cdi_dir=cdi_dir,
            device_plugin=device_plugin,
            claim_unassigned=claim_unassigned,
            mqtt_broker=mqtt_broker,
            mqtt_topic_prefix=mqtt_topic_prefix,
        )
    except AgentConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    Agent(config).run()


@app.command()
def cards(
    sysfs_root: Annotated[
        Path, typer.Option(envvar=_env("sysfs-root"), help="sysfs root to scan.")
    ] = Path("/sys"),
) -> None:
    """List the real-profile cards (Xilinx/AMD, PCI vendor 0x10ee) this machine has."""
    from device_plugin.cards import RealProfile

    found = RealProfile(sysfs_root=sysfs_root).discover()
    if not found:
        typer.echo(f"no Xilinx/AMD FPGA functions under {sysfs_root}/bus/pci/devices")
        return
    for card in found:
        state = "Healthy" if card.healthy else "Unhealthy"
        nodes = ",".join(n.host_path for n in card.device_nodes) or "-"
        typer.echo(f"{card.id}\t{state}\tnuma={card.numa_node}\t{nodes}\t{card.reason}")
