"""A minimal JSON client for the Kubernetes REST API (bearer token, cluster CA), used by the
control plane's readiness checks and by the pod runner. Deliberately small and stdlib-only: the
pod runner needs list/watch/patch/delete on a handful of paths and plain dicts, nothing more.

Tests and other components that want the full typed client use `Cluster.api_client()`."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

JSON = dict[str, Any]


class ApiError(Exception):
    """The apiserver answered with an error status; `status` is the HTTP code."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


@dataclass(frozen=True)
class Credentials:
    """Where the apiserver is and how to authenticate to it."""

    host: str
    port: int
    token: str
    ca_file: Path | None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Credentials:
        """Read the current context of a token-based kubeconfig (as `kubeconfig.render` writes)."""
        doc = yaml.safe_load(path.read_text())
        ctx_name = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        url = urllib.parse.urlsplit(cluster["server"])
        ca = cluster.get("certificate-authority")
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or 443,
            token=user["token"],
            ca_file=Path(ca) if ca else None,
        )


class Kube:
    """Blocking JSON calls against one apiserver. Thread-safe: one connection per call."""

    def __init__(self, creds: Credentials, *, timeout: float = 30.0) -> None:
        self.creds = creds
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=str(creds.ca_file) if creds.ca_file else None)

    def _conn(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.creds.host, self.creds.port, context=self._ctx, timeout=timeout
        )

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.creds.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    @staticmethod
    def _url(path: str, query: Mapping[str, str] | None) -> str:
        return path + ("?" + urllib.parse.urlencode(query) if query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        """Send one request; return the decoded JSON answer or raise `ApiError`."""
        conn = self._conn(self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(
                method,
                self._url(path, query),
                body=data,
                headers=self._headers(content_type if data else None),
            )
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiError(resp.status, method, path, raw)
        decoded: JSON = json.loads(raw) if raw else {}
        return decoded

    def get(self, path: str, **query: str) -> JSON:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body=body)

    def merge_patch(self, path: str, body: JSON) -> JSON:
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body=body)

    def watch(self, path: str, *, timeout_seconds: int = 60, **query: str) -> Iterator[JSON]:
        """Yield watch events (`{"type", "object"}`) until the server closes the stream."""
        params = {**query, "watch": "true", "timeoutSeconds": str(timeout_seconds)}
        conn = self._conn(timeout_seconds + 30)
        try:
            conn.request("GET", self._url(path, params), headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status >= 400:
                raise ApiError(resp.status, "WATCH", path, resp.read().decode(errors="replace"))
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    event: JSON = json.loads(line)
                    yield event
        finally:
            conn.close()
