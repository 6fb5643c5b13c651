"""Inventory, health and sampling loops of the node agent (one asyncio loop).

Every probe interval: list the `NetworkAttachedAccelerator` objects whose `spec.nodes` names
this node, read each one's management token from its Secret, probe `GET /v1/health`, write a
truthful status through the status subresource (only when something changed or the heartbeat
is due), and hand the cards' health to the device plugin. For every NAA a sampler task reads
`GET /v1/sensors` at `sample_hz` into the energy book, and a committer moves the attribution
watermark. Called by `device_plugin.agent`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from device_plugin.book import DeviceInfo, EnergyBook
from device_plugin.cards import NAABacking
from device_plugin.health import card_health, status_from_probe
from device_plugin.management import HealthReport, ManagementClient, ProbeFailure
from naaice.api import (
    GROUP,
    PLURAL_NAAS,
    VERSION,
    InvalidObjectError,
    NAAStatus,
    NetworkAttachedAccelerator,
)
from naaice.energy import NS_PER_S

__all__ = ["Inventory", "InventoryConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InventoryConfig:
    node_name: str
    sample_hz: float = 10.0
    probe_interval_s: float = 1.0
    heartbeat_s: float = 10.0
    settle_s: float = 1.0
    token_ttl_s: float = 30.0
    claim_unassigned: bool = False
    poll_sensors: bool = True


@dataclass
class _Tracked:
    naa: NetworkAttachedAccelerator
    client: ManagementClient
    token: str | None
    sampler: asyncio.Task[None] | None = None
    last_written: NAAStatus | None = None
    last_write_s: float = 0.0


def _status_key(status: NAAStatus | None) -> object:
    """What must change for a status write to be due before the heartbeat."""
    if status is None:
        return None
    conds = tuple((c.type, c.status, c.reason, c.message) for c in status.conditions or ())
    return (conds, status.loaded_bitstream)


@dataclass
class Inventory:
    config: InventoryConfig
    book: EnergyBook
    custom_api: Any
    core_api: Any
    known_until_ns: Callable[[], int]
    on_cards: Callable[[list[NAABacking]], None] | None = None
    _tracked: dict[str, _Tracked] = field(default_factory=dict)
    _tokens: dict[tuple[str, str, str], tuple[float, str | None]] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            committer = asyncio.create_task(self._commit_loop(stop))
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        await self.probe_once()
                    except Exception:
                        log.exception("inventory round failed")
                    delay = self.config.probe_interval_s - (time.monotonic() - started)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=max(0.05, delay))
            finally:
                committer.cancel()
                for t in self._tracked.values():
                    if t.sampler is not None:
                        t.sampler.cancel()
                await asyncio.gather(
                    committer,
                    *(t.sampler for t in self._tracked.values() if t.sampler is not None),
                    return_exceptions=True,
                )

    # ---- inventory ----------------------------------------------------------------------

    def _mine(self) -> list[NetworkAttachedAccelerator]:
        body = self.custom_api.list_cluster_custom_object(GROUP, VERSION, PLURAL_NAAS)
        out: list[NetworkAttachedAccelerator] = []
        for item in body.get("items", []):
            try:
                naa = NetworkAttachedAccelerator.from_body(item)
            except InvalidObjectError as exc:
                log.warning("skipping an NAA object the model refuses: %s", exc)
                continue
            nodes = naa.spec.nodes or []
            if self.config.node_name in nodes or (not nodes and self.config.claim_unassigned):
                out.append(naa)
        return out

    def _token(self, naa: NetworkAttachedAccelerator) -> str | None:
        ref = naa.spec.management.token_secret_ref
        key = (ref.namespace, ref.name, ref.key)
        cached = self._tokens.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.config.token_ttl_s:
            return cached[1]
        token: str | None = None
        try:
            secret = self.core_api.read_namespaced_secret(ref.name, ref.namespace)
            raw = (secret.data or {}).get(ref.key)
            token = base64.b64decode(raw).decode().strip() if raw else None
        except Exception as exc:
            log.warning("cannot read token Secret %s/%s: %s", ref.namespace, ref.name, exc)
        self._tokens[key] = (now, token)
        return token

    async def probe_once(self) -> None:
        assert self._session is not None
        naas = await asyncio.to_thread(self._mine)
        current = {n.metadata.name or "": n for n in naas}
        for name in list(self._tracked):
            if name not in current:
                gone = self._tracked.pop(name)
                if gone.sampler is not None:
                    gone.sampler.cancel()
                self.book.forget_device(name)
        for name, naa in current.items():
            token = await asyncio.to_thread(self._token, naa)
            tracked = self._tracked.get(name)
            endpoint = naa.spec.management.endpoint
            if (
                tracked is None
                or tracked.client.endpoint != endpoint.rstrip("/")
                or (tracked.token != token)
            ):
                if tracked is not None and tracked.sampler is not None:
                    tracked.sampler.cancel()
                client = ManagementClient(session=self._session, endpoint=endpoint, token=token)
                tracked = _Tracked(naa=naa, client=client, token=token)
                self._tracked[name] = tracked
                self.book.ensure_device(name, info=DeviceInfo(board_model=naa.spec.board.model))
                if self.config.poll_sensors:
                    tracked.sampler = asyncio.create_task(self._sample_loop(name, client))
            else:
                tracked.naa = naa
        results = await asyncio.gather(*(self._probe(name, t) for name, t in self._tracked.items()))
        if self.on_cards is not None:
            self.on_cards([r for r in results if r is not None])

    async def _probe(self, name: str, tracked: _Tracked) -> NAABacking | None:
        probe, work = await asyncio.gather(tracked.client.health(), tracked.client.work_counters())
        if not isinstance(work, ProbeFailure):
            for unit, value in work.items():
                self.book.set_work(name, unit, value)
        now = datetime.now(UTC)
        reading = self.book.snapshot_device(name)
        previous = tracked.naa.status
        status = status_from_probe(
            previous=previous,
            probe=probe,
            power_watts=reading[0],
            energy_microjoules=reading[1],
            now=now,
            generation=tracked.naa.metadata.generation,
        )
        if isinstance(probe, HealthReport):
            self.book.set_health(name, reachable=True, healthy=probe.healthy, state=probe.state)
            self.book.set_bitstream(name, probe.bitstream_name or "")
        else:
            self.book.set_health(name, reachable=probe.reachable, healthy=False, state="Unknown")
        due = time.monotonic() - tracked.last_write_s >= self.config.heartbeat_s
        if due or _status_key(status) != _status_key(previous):
            try:
                await asyncio.to_thread(self._write_status, name, status)
                tracked.last_write_s = time.monotonic()
                tracked.naa = tracked.naa.model_copy(update={"status": status})
            except Exception as exc:
                log.warning("cannot write status of NAA %s: %s", name, exc)
        ok, why = card_health(status)
        return NAABacking(
            naa=name, management_endpoint=tracked.client.endpoint, healthy=ok, reason=why
        )

    def _write_status(self, name: str, status: NAAStatus) -> None:
        body = {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
        self.custom_api.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL_NAAS, name, body)

    # ---- sampling -----------------------------------------------------------------------

    async def _sample_loop(self, name: str, client: ManagementClient) -> None:
        period = 1.0 / self.config.sample_hz
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            reading = await client.sensors()
            if isinstance(reading, ProbeFailure):
                self.book.set_sensor_up(name, False)
            else:
                self.book.add_sample(name, reading.sample, now_ns=time.time_ns())
            next_tick += period
            delay = next_tick - loop.time()
            if delay < -period:  # fell behind (slow endpoint): do not burst to catch up
                next_tick = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        period = 1.0 / self.config.sample_hz
        settle_ns = round(self.config.settle_s * NS_PER_S)
        while not stop.is_set():
            until = min(time.time_ns() - settle_ns, self.known_until_ns())
            self.book.commit(until_ns=until)
            await asyncio.sleep(period)
