"""Client of an NAA's management plane (HTTP/1.1 JSON with a bearer token; contracts.md):
`GET /v1/health`, `GET /v1/sensors`, `GET /v1/identity`, parsed into typed records.

Called by `device_plugin.inventory` (health probes) and `device_plugin.sampling` (sensors).
Every failure becomes a `ProbeFailure` with a condition-ready reason, never an exception
escaping into the loops."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import aiohttp

from naaice.energy import Sample

__all__ = [
    "HealthReport",
    "Identity",
    "ManagementClient",
    "ProbeFailure",
    "SensorReading",
]


@dataclass(frozen=True, slots=True)
class HealthReport:
    state: str
    healthy: bool
    reason: str
    bitstream_name: str | None
    bitstream_digest: str | None
    active_connections: int


@dataclass(frozen=True, slots=True)
class SensorReading:
    sample: Sample
    temperature_c: float | None
    busy: float | None


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    serial: str
    board_model: str


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    """Why a management call failed. `reachable` is True when the endpoint answered HTTP (e.g.
    401), False when no connection could be made or no answer came in time."""

    reachable: bool
    reason: str
    message: str


class _Malformed(Exception):
    pass


def _field(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Malformed(f"field {key!r} should be {kind.__name__}, got {value!r}")
    return value


class ManagementClient:
    """One NAA's management endpoint. Share one `aiohttp.ClientSession` between clients."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        endpoint: str,
        token: str | None,
        timeout_s: float = 2.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._session = session
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _get(self, path: str) -> dict[str, Any] | ProbeFailure:
        url = self.endpoint + path
        try:
            async with self._session.get(url, headers=self._headers, timeout=self._timeout) as r:
                if r.status == 401:
                    return ProbeFailure(
                        True,
                        "Unauthorized",
                        f"{url} refused the agent's token (401); check the Secret named by "
                        f"spec.management.tokenSecretRef",
                    )
                if r.status != 200:
                    text = (await r.text())[:200]
                    return ProbeFailure(True, "HTTPError", f"{url} answered {r.status}: {text}")
                body = await r.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:
            return ProbeFailure(False, "ConnectionRefused", f"cannot connect to {url}: {exc}")
        except TimeoutError:
            return ProbeFailure(False, "Timeout", f"{url} did not answer in time")
        except (aiohttp.ClientError, ValueError) as exc:
            return ProbeFailure(False, "ConnectionError", f"{url}: {exc}")
        if not isinstance(body, dict):
            return ProbeFailure(True, "MalformedResponse", f"{url} did not return a JSON object")
        return body

    async def health(self) -> HealthReport | ProbeFailure:
        body = await self._get("/v1/health")
        if isinstance(body, ProbeFailure):
            return body
        try:
            loaded = body.get("loadedBitstream")
            name = digest = None
            if isinstance(loaded, dict):
                name = _field(loaded, "name", str)
                digest = _field(loaded, "digest", str)
            return HealthReport(
                state=_field(body, "state", str),
                healthy=_field(body, "healthy", bool),
                reason=str(body.get("reason") or ""),
                bitstream_name=name,
                bitstream_digest=digest,
                active_connections=int(body.get("activeConnections") or 0),
            )
        except _Malformed as exc:
            return ProbeFailure(True, "MalformedResponse", f"/v1/health: {exc}")

    async def sensors(self) -> SensorReading | ProbeFailure:
        body = await self._get("/v1/sensors")
        if isinstance(body, ProbeFailure):
            return body
        try:
            t_ns = _field(body, "timestampNs", int)
            power = body.get("powerWatts")
            if not isinstance(power, int | float) or isinstance(power, bool):
                raise _Malformed(f"field 'powerWatts' should be a number, got {power!r}")
            energy = body.get("energyMicrojoules")
            if energy is not None and (not isinstance(energy, int) or isinstance(energy, bool)):
                raise _Malformed(f"field 'energyMicrojoules' should be int, got {energy!r}")
            temp = body.get("temperatureC")
            activity = body.get("activity")
            busy = activity.get("busy") if isinstance(activity, dict) else None
            return SensorReading(
                sample=Sample(t_ns=t_ns, power_w=float(power), energy_uj=energy),
                temperature_c=float(temp) if isinstance(temp, int | float) else None,
                busy=float(busy) if isinstance(busy, int | float) and math.isfinite(busy) else None,
            )
        except _Malformed as exc:
            return ProbeFailure(True, "MalformedResponse", f"/v1/sensors: {exc}")

    async def work_counters(self) -> dict[str, float] | ProbeFailure:
        """Work the NAA reports on its `/metrics`: successful kernel runs (`kernel_run`) and,
        when its kernels count epochs (`naa_<…>epochs_total`, e.g. `naa_training_epochs_total`),
        training epochs (`epoch`)."""
        from prometheus_client.parser import text_string_to_metric_families

        url = self.endpoint + "/metrics"
        try:
            async with self._session.get(url, headers=self._headers, timeout=self._timeout) as r:
                if r.status != 200:
                    return ProbeFailure(True, "HTTPError", f"{url} answered {r.status}")
                text = await r.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ProbeFailure(False, "ConnectionError", f"{url}: {exc}")
        work: dict[str, float] = {}
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if (
                        sample.name == "naa_kernel_runs_total"
                        and sample.labels.get("result") == "ok"
                    ):
                        work["kernel_run"] = work.get("kernel_run", 0.0) + sample.value
                    elif sample.name.startswith("naa_") and sample.name.endswith("epochs_total"):
                        # Kernels report work as `naa_<unit>_total` (e.g. training_epochs).
                        work["epoch"] = work.get("epoch", 0.0) + sample.value
        except ValueError as exc:
            return ProbeFailure(True, "MalformedResponse", f"{url}: {exc}")
        work.setdefault("kernel_run", 0.0)
        return work

    async def identity(self) -> Identity | ProbeFailure:
        body = await self._get("/v1/identity")
        if isinstance(body, ProbeFailure):
            return body
        board = body.get("board")
        return Identity(
            name=str(body.get("name") or ""),
            serial=str(body.get("serial") or ""),
            board_model=str(board.get("model") or "") if isinstance(board, dict) else "",
        )
