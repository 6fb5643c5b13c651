"""Client of an NAA's management plane (HTTP/1.1 JSON with a bearer token, contracts.md):
health, flash, scrub and sensors. Called by `services.jobs` and `services.scheduler`.

Errors form a small hierarchy: `Unreachable` (connection refused, timeout: the NAA may be dead)
and `Rejected` (the NAA answered with an error document, e.g. 400 digest mismatch or 409 busy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from naaice.energy import Sample


class ManagementError(Exception):
    """A management API call did not succeed."""


class Unreachable(ManagementError):
    """The NAA's management endpoint did not answer (refused, reset or timed out)."""


class Rejected(ManagementError):
    """The NAA answered with an HTTP error; `code` is its `error` field."""

    def __init__(self, endpoint: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{endpoint}: HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Health:
    state: str
    healthy: bool
    reason: str
    digest: str | None
    active_connections: int


class Management:
    """One aiohttp session shared by every NAA the operator talks to."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=256)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self, method: str, endpoint: str, path: str, token: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        url = endpoint.rstrip("/") + path
        try:
            async with self._sess().request(
                method, url, json=body, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                try:
                    doc = await resp.json(content_type=None)
                except ValueError:
                    doc = {}
                if not isinstance(doc, dict):
                    doc = {}
                if resp.status >= 400:
                    raise Rejected(
                        url,
                        resp.status,
                        str(doc.get("error", "")),
                        str(doc.get("message", resp.reason or "")),
                    )
                return resp.status, doc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unreachable(f"{url}: {type(exc).__name__}: {exc}") from exc

    async def health(self, endpoint: str, token: str) -> Health:
        _, doc = await self._call("GET", endpoint, "/v1/health", token)
        loaded = doc.get("loadedBitstream") or {}
        return Health(
            state=str(doc.get("state", "")),
            healthy=bool(doc.get("healthy", False)),
            reason=str(doc.get("reason", "")),
            digest=loaded.get("digest") if isinstance(loaded, dict) else None,
            active_connections=int(doc.get("activeConnections", 0)),
        )

    async def flash(
        self, endpoint: str, token: str, *, name: str, digest: str, artifact: str, force: bool
    ) -> bool:
        """Start flashing; True when the NAA already held `digest` (nothing to wait for)."""
        body = {"name": name, "digest": digest, "artifact": artifact, "force": force}
        status, doc = await self._call("POST", endpoint, "/v1/flash", token, body)
        return status == 200 and bool(doc.get("alreadyLoaded", False))

    async def scrub(self, endpoint: str, token: str) -> None:
        await self._call("POST", endpoint, "/v1/scrub", token, {})

    async def sensors(self, endpoint: str, token: str) -> Sample:
        _, doc = await self._call("GET", endpoint, "/v1/sensors", token)
        return Sample(
            t_ns=int(doc["timestampNs"]),
            power_w=float(doc.get("powerWatts", 0.0)),
            energy_uj=int(doc["energyMicrojoules"]) if "energyMicrojoules" in doc else None,
        )
