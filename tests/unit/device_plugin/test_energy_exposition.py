"""The exporter's exposition (ENERGY.md §4/§5/§7): names, types, units, labels, Content-Type,
and values that do not depend on when or how often the page is scraped."""

from __future__ import annotations

import random
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_families,
)
from prometheus_client.parser import text_string_to_metric_families

from device_plugin.book import DeviceInfo, EnergyBook
from device_plugin.exporter import METRIC_NAMES, EnergyCollector
from naaice.energy import NS_PER_S, IntegratorConfig, JobKey, Sample

T0 = 1_800_000_000 * NS_PER_S
JOB = JobKey(namespace="ml", name="poet", uid="0b7c")


def _book() -> EnergyBook:
    book = EnergyBook(config=IntegratorConfig(nominal_period_s=0.1), sbc="node-a")
    book.ensure_device("naa-0", info=DeviceInfo(board_model="alveo-u55c", serial="S1"))
    book.bind("naa-0", job=JOB, at_ns=T0 + 2 * NS_PER_S)
    book.set_budget(JOB, 5000.0)
    for i in range(51):
        t = T0 + i * NS_PER_S // 10
        book.add_sample("naa-0", Sample(t_ns=t, power_w=80.0, energy_uj=i * 8_000_000), now_ns=t)
    book.add_sample("naa-0", Sample(t_ns=T0, power_w=80.0), now_ns=T0)  # a duplicate
    book.set_work("naa-0", "kernel_run", 10)
    book.set_work("naa-0", "kernel_run", 17)
    book.set_mqtt(up=True)
    book.count_mqtt_message("accepted")
    book.commit(until_ns=T0 + 5 * NS_PER_S)
    return book


@pytest.fixture
def served() -> Iterator[tuple[str, EnergyBook]]:
    book = _book()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EnergyCollector(book))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_port}/metrics", book
    server.shutdown()
    server.server_close()
    thread.join()


def _fetch(url: str, accept: str | None = None) -> tuple[str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def test_exposition_names_types_and_labels_follow_the_naming_rules(
    served: tuple[str, EnergyBook],
) -> None:
    ctype, text = _fetch(served[0])
    assert ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    exposed = {s.name for f in families.values() for s in f.samples}
    for name in METRIC_NAMES:
        assert name in exposed or f"{name}_total" in exposed or name in families, name
    for fam in families.values():
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples)
        for s in fam.samples:
            clash = {"namespace", "pod", "job", "instance", "service", "zone", "cluster"}
            assert not clash & set(s.labels), (s.name, s.labels)
            assert "uid" not in s.labels or s.name == "naa_job_info"


def test_openmetrics_exposition_carries_units_and_ends_with_eof(
    served: tuple[str, EnergyBook],
) -> None:
    ctype, text = _fetch(served[0], accept="application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert "# UNIT naa_device_energy_joules joules" in text
    fams = {f.name: f for f in om_families(text)}
    energy = fams["naa_device_energy_joules"]
    assert energy.unit == "joules"
    assert {s.labels["source"] for s in energy.samples if s.name.endswith("_total")} == {
        "hw_counter",
        "integrated",
    }


def test_job_series_show_the_bound_share_work_and_budget(served: tuple[str, EnergyBook]) -> None:
    _, text = _fetch(served[0])
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    job = (("device", "naa-0"), ("naajob", "poet"), ("naajob_namespace", "ml"))
    # 80 W counter-measured from bind (2.0 s) to the watermark (5.0 s).
    assert values[("naa_job_energy_joules_total", job)] == pytest.approx(240.0, rel=1e-9)
    assert values[("naa_job_bound_seconds_total", job)] == pytest.approx(3.0)
    assert values[("naa_job_work_units_total", (*job, ("unit", "kernel_run")))] == 7
    budget = (("naajob", "poet"), ("naajob_namespace", "ml"))
    assert values[("naa_job_energy_budget_joules", budget)] == 5000.0
    assert values[("naa_job_energy_coverage_ratio", budget)] == pytest.approx(1.0)
    unbound = values[("naa_device_unbound_energy_joules_total", (("device", "naa-0"),))]
    assert unbound == pytest.approx(160.0, rel=1e-9)
    rejected = (("device", "naa-0"), ("reason", "duplicate"))
    assert values[("naa_device_samples_rejected_total", rejected)] == 1


def test_values_do_not_depend_on_when_or_how_often_the_page_is_scraped() -> None:
    rng = random.Random(5)
    pages = []
    for scrape_every in (1, 7, 50):
        book = EnergyBook(config=IntegratorConfig(nominal_period_s=0.1), sbc="n")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EnergyCollector(book))
        book.bind("d", job=JOB, at_ns=T0 + 3 * NS_PER_S + 12345)
        for i in range(100):
            t = T0 + i * NS_PER_S // 10
            book.add_sample("d", Sample(t_ns=t, power_w=50 + 30 * (i % 7 == 0)), now_ns=t)
            book.commit(until_ns=t - NS_PER_S // 2)
            if i % scrape_every == rng.randrange(scrape_every):
                list(registry.collect())
        book.commit(until_ns=T0 + 20 * NS_PER_S)
        page = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in registry.collect()
            for s in f.samples
            if not s.name.endswith("_created")
        }
        pages.append(page)
    assert pages[0] == pages[1] == pages[2]
