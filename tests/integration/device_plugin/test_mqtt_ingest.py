"""MQTT ingest end to end (ENERGY.md §7): a real mosquitto on loopback, a publisher playing the
SBC with a 10 Hz sine profile, timestamp jitter and 1 % QoS-1 style duplicates; the agent's
ingest integrates it and the job's energy matches the analytic value within the §6 bound."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from device_plugin.book import EnergyBook
from device_plugin.exporter import families
from device_plugin.mqtt import MqttIngest
from naaice.energy import NS_PER_S, IntegratorConfig, JobKey

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="needs Debian mosquitto (hack/ensure-debs.sh)",
)
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
JOB = JobKey("ml", "poet", "u-1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None, "mosquitto exited"
        assert time.monotonic() < deadline, "mosquitto did not listen"
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _publisher(port: int):  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sbc", protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _wait(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_jittered_10hz_profile_with_duplicates_integrates_within_the_bound(broker: int) -> None:
    book = EnergyBook(config=IntegratorConfig(nominal_period_s=0.1), sbc="sbc-0")
    book.ensure_device("naa-0")
    ingest = MqttIngest(book=book, host="127.0.0.1", port=broker, accept=book.has_device)
    ingest.start()
    pub = _publisher(broker)
    try:
        _wait(lambda: ingest.up)
        time.sleep(0.2)  # the subscription is acknowledged after the connect
        rng = np.random.default_rng(9)
        amp, mean, omega = 40.0, 89.0, 2 * math.pi / 7.0
        t0 = time.time_ns() - 60 * NS_PER_S  # sensor time in the recent past
        times = [t0 + round((i * 0.1 + rng.uniform(-0.02, 0.02)) * NS_PER_S) for i in range(300)]
        bind, unbind = t0 + round(5.03 * NS_PER_S), t0 + round(25.07 * NS_PER_S)
        book.bind("naa-0", job=JOB, at_ns=bind)
        book.unbind("naa-0", job=JOB, at_ns=unbind)
        duplicates = 0
        for t in times:
            x = (t - t0) / NS_PER_S
            payload = json.dumps(
                {"timestampNs": t, "powerWatts": mean + amp * math.sin(omega * x)}
            ).encode()
            pub.publish("naaice/naa-0/sensors", payload, qos=1).wait_for_publish(5)
            if rng.random() < 0.01 or t == times[150]:
                pub.publish("naaice/naa-0/sensors", payload, qos=1).wait_for_publish(5)
                duplicates += 1
        pub.publish("naaice/naa-9/sensors", b"{}", qos=1).wait_for_publish(5)
        pub.publish("naaice/naa-0/sensors", b"not json", qos=1).wait_for_publish(5)
        total = len(times) + duplicates + 2
        _wait(lambda: sum(ingest.messages.values()) >= total)
        book.commit(until_ns=times[-1])

        snap = book.snapshot()
        (dev,) = snap.devices
        (job,) = snap.jobs
        assert ingest.messages == {
            "accepted": len(times),
            "rejected": duplicates,
            "malformed": 1,
            "ignored": 1,
        }
        assert dev.rejected["duplicate"] == duplicates
        a, b = (bind - t0) / NS_PER_S, (unbind - t0) / NS_PER_S
        exact = mean * (b - a) + amp / omega * (math.cos(omega * a) - math.cos(omega * b))
        dt = 0.14  # the largest spacing with ±20 ms jitter
        bound = (b - a + 2 * dt) * dt**2 * amp * omega**2 / 12
        assert abs(job.joules - exact) <= bound
        assert job.measured_ns == job.bound_ns
        assert job.joules + dev.unbound_j == pytest.approx(dev.integrated_j, rel=1e-9)
        names = {f.name for f in families(snap)}
        assert {"naa_exporter_mqtt_up", "naa_exporter_mqtt_messages"} <= names
    finally:
        pub.loop_stop()
        pub.disconnect()
        ingest.stop()
