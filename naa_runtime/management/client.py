"""A small synchronous client of the management API, for `naaice runtime flash|scrub|health|
sensors` (`naa_runtime.cli`). Standard library only; errors carry the NAA's JSON message."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class ManagementClientError(Exception):
    """The NAA refused a request or could not be reached; the message says why."""


@dataclass(frozen=True)
class ManagementClient:
    endpoint: str
    token: str | None
    timeout: float = 30.0

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        url = self.endpoint.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw)
                detail = f"{doc['error']}: {doc['message']}"
            except (ValueError, KeyError, TypeError):
                detail = raw.decode(errors="replace")[:200]
            raise ManagementClientError(f"{method} {url} → HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ManagementClientError(
                f"cannot reach {url}: {reason}; is the NAA running and the endpoint right?"
            ) from exc

    def wait_settled(self, *, timeout: float) -> dict[str, Any]:
        """Poll /v1/health until the NAA is no longer Flashing."""
        deadline = time.monotonic() + timeout
        while True:
            health: dict[str, Any] = self.request("GET", "/v1/health")
            if health["state"] != "Flashing":
                return health
            if time.monotonic() > deadline:
                raise ManagementClientError(
                    f"the NAA is still Flashing after {timeout} s; check its log"
                )
            time.sleep(0.1)
