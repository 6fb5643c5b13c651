"""Start one operator: Kopf (watches, admission webhook) and the `Controller` side by side in
one event loop. Called by `naa_operator.cli` (`naaice operator run`), tests and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from naa_operator.adapters.kube import Kube, load_api_client
from naa_operator.adapters.management import Management
from naa_operator.handlers.registry import WEBHOOK_ID, build_registry
from naa_operator.services.admission import Admission
from naa_operator.services.controller import Controller, OperatorConfig
from naa_operator.services.metrics import OperatorMetrics

log = logging.getLogger("naaice.operator")

#: Name of the MutatingWebhookConfiguration Kopf manages in managed mode.
WEBHOOK_CONFIGURATION = "auto.kopf.dev"
#: The URL path Kopf serves the NAA Spec webhook at: its handler id after the server's root
#: path, which we leave empty (kopf's WebhookServer routes POST "<path>/{id}"). A chart-owned
#: configuration's `clientConfig.service.path` must be exactly this.
WEBHOOK_PATH = f"/{WEBHOOK_ID}"


@dataclass(frozen=True)
class WebhookOptions:
    """Where the admission server listens and the certificate it serves (issued by the
    cluster's CA; Kopf's self-signed mode is not used).

    `managed`: Kopf registers the `auto.kopf.dev` MutatingWebhookConfiguration (URL
    `https://<host>:<port>/naaice-naa-spec`, caBundle from `cafile`, which it then needs).
    Unmanaged, the operator only serves: whoever deploys it (the Helm chart) owns the
    configuration, and `cafile` may be None."""

    port: int
    certfile: Path
    keyfile: Path
    cafile: Path | None
    host: str = "127.0.0.1"
    managed: bool = True


@dataclass(frozen=True)
class RunOptions:
    namespace: str | None
    lease_namespace: str
    identity: str = ""
    kubeconfig: str | None = None
    webhook: WebhookOptions | None = None
    metrics_port: int = 0
    leader_election: bool = True
    workers: int = 16
    resync_seconds: float = 10.0
    normal_events: bool = True


def _settings(options: RunOptions) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.networking.error_backoffs = (0.5, 1, 2, 3, 5)
    if options.webhook is not None:
        hook = options.webhook
        settings.admission.server = kopf.WebhookServer(
            addr=hook.host,
            port=hook.port,
            host=hook.host,
            certfile=str(hook.certfile),
            pkeyfile=str(hook.keyfile),
            cafile=str(hook.cafile) if hook.cafile is not None else None,
        )
        # None: serve, but neither create nor patch any webhook configuration.
        settings.admission.managed = WEBHOOK_CONFIGURATION if hook.managed else None
    return settings


def in_cluster_login(info: kopf.ConnectionInfo | None) -> kopf.ConnectionInfo | None:
    """Kopf's service-account login with the apiserver address every in-cluster client uses
    (client-go's InClusterConfig, the Python client's): KUBERNETES_SERVICE_HOST and _PORT, not
    Kopf's fixed https://kubernetes.default.svc, which needs cluster DNS. Without that,
    Kopf's discovery never finishes where there is none (the embedded cluster's pods), and the
    admission server, which waits for it, never listens."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if info is None or not host or not port:
        return info
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return dataclasses.replace(info, server=f"https://{authority}")


async def run_operator(
    options: RunOptions,
    *,
    stop: asyncio.Event | None = None,
    ready: threading.Event | None = None,
    metrics: OperatorMetrics | None = None,
) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM when in the main thread)."""
    identity = options.identity or f"{socket.gethostname()}-{os.getpid()}"
    api = load_api_client(kubeconfig=options.kubeconfig, pool=max(32, options.workers * 2))
    kube = Kube(api, threads=max(16, options.workers))
    mgmt = Management()
    metrics = metrics or OperatorMetrics()
    controller = Controller(
        kube=kube,
        management=mgmt,
        metrics=metrics,
        config=OperatorConfig(
            namespace=options.namespace,
            lease_namespace=options.lease_namespace,
            identity=identity,
            workers=options.workers,
            resync_seconds=options.resync_seconds,
            leader_election=options.leader_election,
            normal_events=options.normal_events,
        ),
    )
    admission = Admission(kube=kube) if options.webhook is not None else None
    registry = build_registry(controller=controller, admission=admission)
    kubeconfig = options.kubeconfig

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if kubeconfig:
            os.environ.setdefault("KUBECONFIG", kubeconfig)
            return kopf.login_with_kubeconfig(**kwargs)
        if os.environ.get("KUBECONFIG"):
            return kopf.login_with_kubeconfig(**kwargs)
        return in_cluster_login(kopf.login_with_service_account(**kwargs))

    server = None
    if options.metrics_port:
        from prometheus_client import start_http_server

        server, _ = start_http_server(
            options.metrics_port, addr="127.0.0.1", registry=metrics.registry
        )
    kopf_stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    controller_stop = asyncio.Event()
    controller_task = asyncio.create_task(controller.run(controller_stop))

    async def relay() -> None:
        if stop is not None:
            await stop.wait()
            if not kopf_stop.done():
                kopf_stop.set_result(None)

    relay_task = asyncio.create_task(relay())
    if ready is not None:
        ready.set()
    log.info(
        "operator %s starting (namespace=%s, leases in %s)",
        identity,
        options.namespace or "<all>",
        options.lease_namespace,
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=_settings(options),
            standalone=True,
            clusterwide=options.namespace is None,
            namespaces=[options.namespace] if options.namespace else (),
            stop_flag=kopf_stop,
        )
    finally:
        controller_stop.set()
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await controller_task
        await mgmt.close()
        kube.close()
        if server is not None:
            server.shutdown()
