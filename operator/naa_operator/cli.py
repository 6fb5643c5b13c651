"""`naaice operator …`: run the NAAJob operator. Mounted by `naaice_cli.main`; kopf and the
Kubernetes client are imported inside the command so `naaice --help` stays fast."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="The NAAJob operator.")


@app.command()
def run(  # noqa: PLR0917 - typer maps each option to a parameter
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            envvar="NAAICE_NAMESPACE",
            help="Watch NAAJobs in this namespace only.",
        ),
    ] = None,
    all_namespaces: Annotated[
        bool,
        typer.Option(
            "--all-namespaces",
            "-A",
            envvar="NAAICE_ALL_NAMESPACES",
            help="Watch NAAJobs in every namespace (the default without -n).",
        ),
    ] = False,
    lease_namespace: Annotated[
        str | None,
        typer.Option(
            envvar="NAAICE_LEASE_NAMESPACE",
            help="Namespace of the allocation and leader Leases "
            "(default: $POD_NAMESPACE, else naaice-system).",
        ),
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            envvar="NAAICE_KUBECONFIG", help="Kubeconfig (else $KUBECONFIG or in-cluster)."
        ),
    ] = None,
    webhook_port: Annotated[
        int,
        typer.Option(envvar="NAAICE_WEBHOOK_PORT", help="Admission webhook port; 0 = no webhook."),
    ] = 0,
    webhook_host: Annotated[
        str,
        typer.Option(
            envvar="NAAICE_WEBHOOK_HOST",
            help="Address the webhook listens on and the apiserver calls.",
        ),
    ] = "127.0.0.1",
    webhook_cert: Annotated[
        Path | None, typer.Option(envvar="NAAICE_WEBHOOK_CERT", help="Serving certificate (PEM).")
    ] = None,
    webhook_key: Annotated[
        Path | None, typer.Option(envvar="NAAICE_WEBHOOK_KEY", help="Its private key (PEM).")
    ] = None,
    webhook_ca: Annotated[
        Path | None,
        typer.Option(
            envvar="NAAICE_WEBHOOK_CA",
            help="The CA that signed it (the caBundle Kopf registers; --webhook-managed only).",
        ),
    ] = None,
    webhook_managed: Annotated[
        bool,
        typer.Option(
            "--webhook-managed/--webhook-unmanaged",
            envvar="NAAICE_WEBHOOK_MANAGED",
            help="--webhook-managed: Kopf creates and patches the auto.kopf.dev "
            "MutatingWebhookConfiguration pointing at https://<--webhook-host>:<port>; "
            "--webhook-unmanaged: only serve (path /naaice-naa-spec), the configuration "
            "belongs to whoever deployed the operator (the Helm chart).",
        ),
    ] = True,
    metrics_port: Annotated[
        int, typer.Option(envvar="NAAICE_METRICS_PORT", help="Prometheus /metrics port; 0 = off.")
    ] = 0,
    peering: Annotated[
        bool,
        typer.Option(
            "--peering/--standalone",
            envvar="NAAICE_PEERING",
            help="--peering: elect a leader through a Lease so several replicas can "
            "run; --standalone: act alone at once.",
        ),
    ] = True,
    identity: Annotated[
        str, typer.Option(envvar="NAAICE_IDENTITY", help="This replica's name in the leader Lease.")
    ] = "",
    workers: Annotated[
        int, typer.Option(envvar="NAAICE_WORKERS", help="Concurrent job reconciles.")
    ] = 16,
    normal_events: Annotated[
        bool,
        typer.Option(
            "--normal-events/--warning-events-only",
            envvar="NAAICE_NORMAL_EVENTS",
            help="Post Normal events for each job (Scheduled with the decision trace, Flashed, "
            "Completed with its energy) besides the Warning ones; each is one more apiserver "
            "write per job.",
        ),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", envvar="NAAICE_VERBOSE")] = False,
) -> None:
    """Run the operator until SIGINT/SIGTERM."""
    import asyncio
    import logging

    from naa_operator.handlers.run import RunOptions, WebhookOptions, run_operator

    if namespace and all_namespaces:
        raise typer.BadParameter("use either --namespace or --all-namespaces, not both")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kopf").setLevel(logging.INFO if verbose else logging.WARNING)
    webhook = None
    if webhook_port:
        if not (webhook_cert and webhook_key and (webhook_ca or not webhook_managed)):
            raise typer.BadParameter(
                "--webhook-port needs --webhook-cert, --webhook-key and (unless "
                "--webhook-unmanaged) --webhook-ca (a serving certificate for the webhook "
                "address signed by a CA the apiserver trusts; `naaice cluster` can issue one)"
            )
        webhook = WebhookOptions(
            port=webhook_port,
            certfile=webhook_cert,
            keyfile=webhook_key,
            cafile=webhook_ca,
            host=webhook_host,
            managed=webhook_managed,
        )
    options = RunOptions(
        namespace=namespace,
        lease_namespace=lease_namespace or os.environ.get("POD_NAMESPACE") or "naaice-system",
        identity=identity,
        kubeconfig=kubeconfig,
        webhook=webhook,
        metrics_port=metrics_port,
        leader_election=peering,
        workers=workers,
        normal_events=normal_events,
    )
    asyncio.run(run_operator(options))
