"""MQTT sensor ingest in the NAAICE EMA style: the boards' SBC publishes sensor readings to a
broker, the agent subscribes and integrates them at sensor rate.

Topic `<prefix>/<naa>/sensors`, QoS 1, payload the JSON object of `GET /v1/sensors`
(`timestampNs`, `powerWatts`, optional cumulative `energyMicrojoules`). QoS 1 means at least
once: redeliveries carry the same sensor timestamp and are rejected as duplicates by the
integrator, so they never count twice. Messages for NAAs this agent does not manage are
ignored. Called by `device_plugin.agent` when `--mqtt-broker` is set (the HTTP sensor polling
is then off) and by tests/integration/device_plugin.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from device_plugin.book import EnergyBook
from device_plugin.errors import AgentConfigError
from naaice.energy import Sample

__all__ = ["MqttIngest", "parse_broker", "parse_payload"]

log = logging.getLogger(__name__)


def parse_broker(value: str) -> tuple[str, int]:
    """`host:port` (port 1883 when omitted) from `--mqtt-broker`."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "1883"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AgentConfigError(
            f"--mqtt-broker {value!r} is not host:port (e.g. mosquitto.naaice-system:1883)"
        )
    return host, int(port)


def parse_payload(payload: bytes) -> Sample | None:
    """The sample in a sensors message, or None when it is not one."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    t = body.get("timestampNs")
    p = body.get("powerWatts")
    e = body.get("energyMicrojoules")
    if not isinstance(t, int) or isinstance(t, bool) or not isinstance(p, int | float):
        return None
    if isinstance(p, bool) or (e is not None and (not isinstance(e, int) or isinstance(e, bool))):
        return None
    return Sample(t_ns=t, power_w=float(p), energy_uj=e)


class MqttIngest:
    """Subscribe and feed the book; paho runs its network loop in its own thread."""

    def __init__(
        self,
        *,
        book: EnergyBook,
        host: str,
        port: int,
        topic_prefix: str = "naaice",
        accept: Callable[[str], bool] | None = None,
    ) -> None:
        import paho.mqtt.client as paho

        mqtt: Any = paho
        self._book = book
        self._prefix = topic_prefix.strip("/")
        self._accept = accept
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self.up = False
        self.messages: dict[str, int] = {"accepted": 0, "rejected": 0, "malformed": 0, "ignored": 0}
        client: Any = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"naaice-agent-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client = client

    @property
    def subscription(self) -> str:
        return f"{self._prefix}/+/sensors"

    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%d refused: %s", self._host, self._port, reason)
            return
        client.subscribe(self.subscription, qos=1)
        with self._lock:
            self.up = True
        self._book.set_mqtt(up=True)

    def _on_disconnect(self, *_args: Any) -> None:
        with self._lock:
            self.up = False
        self._book.set_mqtt(up=False)

    def _count(self, result: str) -> None:
        with self._lock:
            self.messages[result] += 1
        self._book.count_mqtt_message(result)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        parts = str(message.topic).split("/")
        naa = parts[-2] if len(parts) >= 3 and parts[-1] == "sensors" else ""
        if not naa or (self._accept is not None and not self._accept(naa)):
            self._count("ignored")
            return
        sample = parse_payload(message.payload)
        if sample is None:
            self._count("malformed")
            return
        verdict = self._book.add_sample(naa, sample, now_ns=time.time_ns())
        self._count("accepted" if verdict is None else "rejected")
