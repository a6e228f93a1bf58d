"""webui's /metrics and /rng-rates against real processes: redis-server, rng and Prometheus."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.rng_fleet import NODES, scraped_rngs
from tests.support.servers import LOOPBACK, RedisServer, ServiceProcess, free_port, wait_for

StartService = Callable[..., ServiceProcess]


def samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted labels: value} of every sample called `name` in the text at url/metrics."""
    answer = httpx.get(url + "/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def requests_to(url: str, route: str, status: str) -> float:
    key = (("route", route), ("status", status))
    return samples(url, "dockercoins_webui_requests_total").get(key, 0.0)


def test_metrics_parse_and_count_requests_by_route(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url, DOCKERCOINS_NODE="node7")
    before = requests_to(webui.url, "/json", "200")
    for _ in range(3):
        assert httpx.get(webui.url + "/json", timeout=5).status_code == 200
    assert requests_to(webui.url, "/json", "200") == before + 3
    for path in ("/index.html", "/no/such/file", "/../../etc/passwd"):
        httpx.get(webui.url + path, timeout=5)
    counted = samples(webui.url, "dockercoins_webui_requests_total")
    routes = {dict(labels)["route"] for labels in counted}
    assert routes <= {"/", "/json", "/rng-rates", "/metrics", "/{path}"}, routes  # templates
    assert counted[(("route", "/{path}"), ("status", "404"))] >= 2
    durations = samples(webui.url, "dockercoins_webui_request_duration_seconds_count")
    assert durations[(("route", "/json"),)] >= 3
    info = samples(webui.url, "dockercoins_instance_info")
    assert len(info) == 1
    labels = dict(next(iter(info)))
    assert (labels["service"], labels["node"]) == ("webui", "node7")
    assert labels["hostname"]


def test_metrics_off_means_no_route(start_service: StartService, redis_server: RedisServer) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url, METRICS="off")
    assert httpx.get(webui.url + "/metrics", timeout=5).status_code == 404
    assert httpx.get(webui.url + "/json", timeout=5).status_code == 200


def rng_rates(webui: ServiceProcess) -> dict[str, Any]:
    answer = httpx.get(webui.url + "/rng-rates", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    data: dict[str, Any] = answer.json()
    assert set(data) == {"available", "reason", "series", "now"}
    return data


def test_rng_rates_without_prometheus_configured(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url)
    data = rng_rates(webui)
    assert data["available"] is False
    assert data["reason"] == "Prometheus not configured (PROMETHEUS_URL is unset)"
    assert data["series"] == []
    assert "rng rates unavailable" not in webui.logs()  # nothing to report: it is a choice


def test_rng_rates_while_prometheus_is_down(
    start_service: StartService, redis_server: RedisServer
) -> None:
    nobody = f"http://{LOOPBACK}:{free_port()}"
    webui = start_service("webui", REDIS_URL=redis_server.url, PROMETHEUS_URL=nobody)
    for _ in range(3):
        data = rng_rates(webui)
        assert data["available"] is False
        assert data["reason"].startswith("Prometheus unreachable: ")
        assert "\n" not in data["reason"]
        assert data["series"] == []
    assert httpx.get(webui.url + "/json", timeout=5).status_code == 200  # the rest works
    logs = webui.logs()
    assert logs.count("rng rates unavailable") == 1, logs  # one line per outage
    assert "Traceback" not in logs


def test_rng_rates_from_a_real_prometheus(redis_server: RedisServer, tmp_path: Path) -> None:
    """Two rng on fake nodes, busy, scraped every second: one series per node, each > 0/s;
    and Prometheus scrapes webui's own /metrics too."""
    webui = ServiceProcess(
        name="webui", env={"REDIS_URL": redis_server.url}, log_path=tmp_path / "webui.log"
    )
    webui_target = f"{LOOPBACK}:{webui.port}"
    with scraped_rngs(tmp_path, more_jobs={"webui": [webui_target]}) as fleet:
        webui.env["PROMETHEUS_URL"] = fleet.prometheus.url
        try:
            webui.start()
            found: dict[str, float] = {}

            def both_nodes_answer() -> bool:
                data = rng_rates(webui)
                assert data["available"] is True, data["reason"]
                assert data["reason"] is None
                found.clear()
                found.update({one["label"]: one["rate"] for one in data["series"]})
                return set(found) == set(NODES) and all(rate > 0 for rate in found.values())

            wait_for(both_nodes_answer, timeout=40, interval=1)
            series = rng_rates(webui)["series"]
            instances = {f"{LOOPBACK}:{rng.port}" for rng in fleet.rngs}
            assert {one["instance"] for one in series} == instances

            def webui_scraped() -> bool:
                up = fleet.prometheus.query('up{job="webui"}')
                counted = fleet.prometheus.query(
                    'dockercoins_webui_requests_total{route="/rng-rates", status="200"}'
                )
                return [one["value"][1] for one in up] == ["1"] and len(counted) == 1

            wait_for(webui_scraped, timeout=15, interval=0.5)
            assert "Traceback" not in webui.logs()
        finally:
            webui.stop()
