"""The Prometheus HTTP API client of `status` and `bench rng-modes`: the query it sends, how
it reads the answers (in the shapes Prometheus 2.42 answers, captured from a real server
with the addresses changed), where it looks, that a missing Prometheus is a reason; and
once against a real Prometheus scraping real rng processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from dockercoins.lab import state as lab_state
from dockercoins.swarm import prometheus
from dockercoins.swarm.prometheus import InstanceRate, Target, Unavailable

from tests.support.rng_fleet import scraped_rngs
from tests.support.servers import free_port, wait_for

URL = "http://127.0.0.1:9090"

# GET /api/v1/query, the rate query: node1's instance has a node label; the other said
# node="" and Prometheus dropped the empty label.
RNG_ANSWER: dict[str, Any] = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            {
                "metric": {"instance": "10.0.1.7:80", "node": "node3"},
                "value": [1795790505.9, "9.8"],
            },
            {"metric": {"instance": "10.0.1.5:80", "node": "node1"}, "value": [1795790505.9, "10"]},
            {"metric": {"instance": "10.0.1.6:80"}, "value": [1795790505.9, "10.2"]},
            {"metric": {"instance": "10.0.1.8:80"}, "value": [1795790505.9, "NaN"]},
        ],
    },
}
EMPTY_ANSWER: dict[str, Any] = {"status": "success", "data": {"resultType": "vector", "result": []}}
# HTTP 400 to a query that does not parse
BAD_QUERY: dict[str, Any] = {
    "status": "error",
    "errorType": "bad_data",
    "error": 'invalid parameter "query": 1:10: parse error: missing unit character in duration',
}
BUILDINFO: dict[str, Any] = {
    "status": "success",
    "data": {"version": "2.42.0+ds", "revision": "2.42.0+ds-5+deb12u1", "goVersion": "go1.19.8"},
}
# GET /api/v1/targets, trimmed to two active targets
TARGETS: dict[str, Any] = {
    "status": "success",
    "data": {
        "activeTargets": [
            {
                "discoveredLabels": {"__address__": "10.0.1.9:9100", "job": "worker"},
                "labels": {"instance": "10.0.1.9:9100", "job": "worker"},
                "scrapePool": "worker",
                "scrapeUrl": "http://10.0.1.9:9100/metrics",
                "lastError": 'Get "http://10.0.1.9:9100/metrics": connect: connection refused',
                "lastScrape": "2026-11-27T14:41:43.809446986Z",
                "lastScrapeDuration": 0.000588474,
                "health": "down",
                "scrapeInterval": "5s",
                "scrapeTimeout": "5s",
            },
            {
                "discoveredLabels": {"__address__": "10.0.1.5:80", "job": "rng"},
                "labels": {"instance": "10.0.1.5:80", "job": "rng"},
                "scrapePool": "rng",
                "scrapeUrl": "http://10.0.1.5:80/metrics",
                "lastError": "",
                "lastScrape": "2026-11-27T14:41:43.705662284Z",
                "lastScrapeDuration": 0.002508718,
                "health": "up",
                "scrapeInterval": "5s",
                "scrapeTimeout": "5s",
            },
        ],
        "droppedTargets": [],
    },
}


def test_the_rate_query_is_the_agreed_promql() -> None:
    assert prometheus.rate_query(prometheus.RNG_REQUESTS, 15) == (
        "sum by (instance, node) (rate(dockercoins_rng_requests_total[15s]) "
        "* on (instance) group_left(node) "
        "(topk by (instance) (1, timestamp(dockercoins_instance_info)) * 0 + 1))"
    )
    # PromQL durations are whole: a run of 29.6 s asks for 30 s, never less than 1 s
    assert "[30s]" in prometheus.rate_query(prometheus.WORKER_HASHES, 29.6)
    assert "[1s]" in prometheus.rate_query(prometheus.RNG_REQUESTS, 0.2)


def test_rates_are_labelled_by_node_else_instance() -> None:
    rates = prometheus.parse_rates(prometheus.api_data(RNG_ANSWER))
    assert rates == [
        InstanceRate(label="10.0.1.6:80", instance="10.0.1.6:80", rate=10.2),
        InstanceRate(label="node1", instance="10.0.1.5:80", rate=10.0, node="node1"),
        InstanceRate(label="node3", instance="10.0.1.7:80", rate=9.8, node="node3"),
    ]  # sorted by label; the NaN series is left out (the report is strict JSON)
    assert prometheus.total(rates) == pytest.approx(30.0)
    assert prometheus.parse_rates(EMPTY_ANSWER["data"]) == []


def test_two_instances_on_one_node_are_told_apart_as_the_page_does() -> None:
    data = {
        "resultType": "vector",
        "result": [
            {"metric": {"instance": "10.0.1.9:80", "node": "node2"}, "value": [1.0, "4"]},
            {"metric": {"instance": "10.0.1.6:80", "node": "node2"}, "value": [1.0, "5"]},
            {"metric": {"instance": "10.0.1.5:80", "node": "node1"}, "value": [1.0, "6"]},
        ],
    }
    assert [(item.label, item.node) for item in prometheus.parse_rates(data)] == [
        ("node1", "node1"),
        ("node2 (10.0.1.6:80)", "node2"),
        ("node2 (10.0.1.9:80)", "node2"),
    ]


def test_an_error_answer_is_one_line_with_prometheus_own_words() -> None:
    with pytest.raises(Unavailable, match=r"refused the query \(bad_data: invalid parameter"):
        prometheus.api_data(BAD_QUERY)
    with pytest.raises(Unavailable, match="not from Prometheus"):
        prometheus.api_data(["something else"])
    with pytest.raises(Unavailable, match="instant vector"):
        prometheus.parse_rates({"resultType": "matrix", "result": []})


def test_targets_have_job_instance_and_health() -> None:
    assert prometheus.parse_targets(prometheus.api_data(TARGETS)) == [
        Target("rng", "10.0.1.5:80", "up", ""),
        Target(
            "worker",
            "10.0.1.9:9100",
            "down",
            'Get "http://10.0.1.9:9100/metrics": connect: connection refused',
        ),
    ]


def test_candidates_are_the_url_given_else_loopback_and_the_lab(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert prometheus.candidates("http://10.9.0.2:9090/") == ["http://10.9.0.2:9090"]
    monkeypatch.setattr(lab_state, "load", lambda: None)
    assert prometheus.candidates(None) == [URL]

    lab = SimpleNamespace(nodes=[SimpleNamespace(ip="10.9.0.2"), SimpleNamespace(ip="10.9.0.3")])
    monkeypatch.setattr(lab_state, "load", lambda: lab)
    assert prometheus.candidates(None) == [
        URL,
        "http://10.9.0.2:9090",
        "http://10.9.0.3:9090",
    ]


@contextmanager
def fake_prometheus(
    answers: dict[str, dict[str, Any]], seen: list[httpx.Request]
) -> Iterator[httpx.Client]:
    """An httpx client whose server answers `answers[path]` (404 for other paths)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        document = answers.get(request.url.path)
        if document is None:
            return httpx.Response(404, text="404 page not found")
        return httpx.Response(200 if document["status"] == "success" else 400, json=document)

    with httpx.Client(transport=httpx.MockTransport(handle)) as http:
        yield http


def test_an_instant_query_at_a_time_over_the_api() -> None:
    seen: list[httpx.Request] = []
    answers = {"/api/v1/query": RNG_ANSWER}
    with fake_prometheus(answers, seen) as http:
        rates = prometheus.fetch_rates(http, URL, prometheus.RNG_REQUESTS, 30, at=1795790505.25)
    assert [item.label for item in rates] == ["10.0.1.6:80", "node1", "node3"]
    params = parse_qs(urlsplit(str(seen[0].url)).query)
    assert params["time"] == ["1795790505.250"]
    assert params["query"] == [prometheus.rate_query(prometheus.RNG_REQUESTS, 30)]


def test_locate_skips_what_is_not_prometheus() -> None:
    seen: list[httpx.Request] = []
    with fake_prometheus({"/api/v1/status/buildinfo": BUILDINFO}, seen) as http:
        assert prometheus.locate(URL, http) == URL
    with fake_prometheus({}, seen) as http, pytest.raises(Unavailable) as caught:
        prometheus.locate(URL, http)
    assert str(caught.value) == f"no Prometheus answered at {URL}"


def test_a_query_refused_by_prometheus_is_unavailable() -> None:
    with (
        fake_prometheus({"/api/v1/query": BAD_QUERY}, []) as http,
        pytest.raises(Unavailable, match="bad_data"),
    ):
        prometheus.query(http, URL, "rate(x[")


def test_nothing_listening_is_none_not_an_error() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert prometheus.rng_rates(nowhere) is None
    assert prometheus.targets(nowhere) is None
    with prometheus.connection() as http, pytest.raises(Unavailable, match="no Prometheus"):
        prometheus.locate(nowhere, http)


def test_a_real_prometheus_labels_real_rngs_by_node(tmp_path: Path) -> None:
    """The one end-to-end check of the query: two rng processes (DOCKERCOINS_NODE nodeA and
    nodeB) under load, scraped every second by Debian's Prometheus."""
    with scraped_rngs(tmp_path) as fleet:
        url = fleet.prometheus.url
        found: list[InstanceRate] = []

        def both_rngs_answer() -> bool:
            found[:] = prometheus.rng_rates(url, window=3) or []
            return len(found) == 2 and all(item.rate > 0 for item in found)

        wait_for(both_rngs_answer, timeout=30, interval=0.5)
        assert [item.label for item in found] == ["nodeA", "nodeB"]
        assert {item.instance for item in found} == {f"127.0.0.1:{rng.port}" for rng in fleet.rngs}
        up = prometheus.targets(url)
        assert up is not None
        assert {(target.job, target.health) for target in up} == {("rng", "up")}
        with prometheus.connection() as http:
            assert prometheus.locate(url, http) == url


def test_an_address_back_on_another_node_after_a_prometheus_restart(tmp_path: Path) -> None:
    """A redeploy: Prometheus restarts on its old data, an rng comes back at the same address
    on another node. The old node's info series lingers (no staleness marker is written at
    shutdown), so the rate must join the newest one, not fail with "duplicate series"."""
    with scraped_rngs(tmp_path, nodes=("nodeA",)) as fleet:
        url = fleet.prometheus.url

        def labelled(node: str) -> bool:
            found = prometheus.rng_rates(url, window=3) or []
            return [item.label for item in found] == [node] and found[0].rate > 0

        wait_for(lambda: labelled("nodeA"), timeout=30, interval=0.5)
        fleet.prometheus.stop()
        rng = fleet.rngs[0]
        rng.stop()
        rng.env["DOCKERCOINS_NODE"] = "nodeB"
        rng.start()
        fleet.prometheus.start()

        def two_info_series() -> bool:
            found = fleet.prometheus.query("count by (instance) (dockercoins_instance_info)")
            return bool(found) and found[0]["value"][1] == "2"

        wait_for(two_info_series, timeout=30, interval=0.5)
        # joined on every info series, the same rate is the error the newest-series join avoids
        naive = (
            "sum by (instance, node) (rate(dockercoins_rng_requests_total[3s]) "
            "* on (instance) group_left(node) dockercoins_instance_info)"
        )

        def naive_fails() -> bool:
            try:
                fleet.prometheus.query(naive)
            except httpx.HTTPStatusError:
                return True
            return False

        wait_for(naive_fails, timeout=30, interval=0.5)
        wait_for(lambda: labelled("nodeB"), timeout=30, interval=0.5)
