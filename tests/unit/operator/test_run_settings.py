"""The operator's Kopf wiring that needs no cluster: the in-cluster login address and the
webhook settings for a self-registering operator and for one whose configuration the Helm
chart owns."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
from naa_operator.handlers.run import (
    WEBHOOK_CONFIGURATION,
    RunOptions,
    WebhookOptions,
    _settings,
    in_cluster_login,
)


def _info() -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t")


def test_in_cluster_login_uses_the_service_host_and_port_like_client_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = in_cluster_login(_info())
    assert info is not None
    assert info.server == "https://10.96.0.1:443"
    assert info.token == "t"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    info = in_cluster_login(_info())
    assert info is not None
    assert info.server == "https://[fd00::1]:443"


def test_in_cluster_login_keeps_kopfs_address_without_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    info = in_cluster_login(_info())
    assert info is not None
    assert info.server == "https://kubernetes.default.svc"
    assert in_cluster_login(None) is None


def _options(*, managed: bool, ca: Path | None) -> RunOptions:
    hook = WebhookOptions(
        port=9443,
        certfile=Path("/tls/tls.crt"),
        keyfile=Path("/tls/tls.key"),
        cafile=ca,
        host="0.0.0.0",
        managed=managed,
    )
    return RunOptions(namespace=None, lease_namespace="x", webhook=hook)


def test_a_managed_webhook_is_registered_by_kopf_and_an_unmanaged_one_only_served() -> None:
    managed = _settings(_options(managed=True, ca=Path("/tls/ca.crt")))
    assert managed.admission.managed == WEBHOOK_CONFIGURATION
    unmanaged = _settings(_options(managed=False, ca=None))
    assert unmanaged.admission.managed is None
    server = unmanaged.admission.server
    assert isinstance(server, kopf.WebhookServer)
    assert (server.addr, server.port, server.path) == ("0.0.0.0", 9443, None)
    assert server.cafile is None
