"""`dockercoins verify`: the comparison of the workers' reports with Redis's ledger (pure),
parsing /ledger, /metrics pages and Prometheus answers, sampling again while a worker is in
flight, and the command against fake web UI, worker and Prometheus endpoints on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from dockercoins import cli
from dockercoins.swarm import verify
from dockercoins.swarm.verify import Entry, Ledger, Report, compare
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tests.support.servers import free_port

# ---------------------------------------------------------------- the comparison


def _ledger(hashes: int, **workers: tuple[int, int]) -> Ledger:
    return Ledger(hashes, {name: Entry(seq, count) for name, (seq, count) in workers.items()})


def test_same_seq_same_hashes_is_nothing_lost_nothing_twice() -> None:
    verdict = compare(_ledger(150, w1=(7, 100), w2=(3, 50)), {"w1": Report(7, 100)})
    assert (verdict.lost, verdict.twice) == (0, 0)
    assert verdict.ok
    [check] = verdict.workers
    assert (check.state, check.lost, check.twice) == (verify.OK, 0, 0)
    assert verdict.gone == ["w2"]  # counted by its ledger entry only
    assert verdict.gone_hashes == 50


def test_same_seq_with_more_in_redis_is_counted_twice() -> None:
    verdict = compare(_ledger(112, w1=(7, 112)), {"w1": Report(7, 100)})
    assert (verdict.lost, verdict.twice) == (0, 12)
    assert verdict.workers[0].state == verify.TWICE
    assert not verdict.ok


def test_redis_with_less_than_it_confirmed_lost_it() -> None:
    # Redis came back without its last flushes: its seq and hashes are behind the worker's
    verdict = compare(_ledger(80, w1=(5, 80)), {"w1": Report(7, 100)})
    assert (verdict.lost, verdict.twice) == (20, 0)
    assert verdict.workers[0].state == verify.LOST


def test_a_loss_shows_even_after_the_worker_moved_on() -> None:
    # Redis lost 20 confirmed hashes, then applied the worker's next flush (seq 8)
    verdict = compare(_ledger(110, w1=(8, 110)), {"w1": Report(8, 130)})
    assert (verdict.lost, verdict.twice) == (20, 0)


def test_a_worker_that_flushed_again_is_in_flight_not_twice() -> None:
    verdict = compare(_ledger(130, w1=(9, 130)), {"w1": Report(7, 100)})
    assert (verdict.lost, verdict.twice) == (0, 0)
    assert [check.worker_id for check in verdict.in_flight] == ["w1"]
    assert verdict.workers[0].state == verify.IN_FLIGHT


def test_in_flight_is_still_checked_for_loss() -> None:
    verdict = compare(_ledger(90, w1=(9, 90)), {"w1": Report(7, 100)})
    assert verdict.workers[0].state == verify.IN_FLIGHT
    assert verdict.lost == 10


def test_an_earlier_ledger_read_at_the_reported_seq_settles_it() -> None:
    ledger = _ledger(130, w1=(9, 130))
    assert compare(ledger, {"w1": Report(7, 100)}, {"w1": {7: 100, 8: 115}}).workers[0].state == (
        verify.OK
    )
    twice = compare(ledger, {"w1": Report(7, 100)}, {"w1": {7: 104}})
    assert (twice.lost, twice.twice, twice.workers[0].state) == (0, 4, verify.TWICE)


def test_a_worker_redis_has_no_entry_for() -> None:
    fresh = compare(_ledger(0), {"w1": Report(0, 0)})
    assert (fresh.workers[0].state, fresh.lost) == (verify.NO_FLUSH, 0)
    forgotten = compare(_ledger(0), {"w1": Report(2, 40)})
    assert (forgotten.workers[0].state, forgotten.lost) == (verify.NOT_IN_LEDGER, 40)


def test_hashes_counted_outside_the_ledger_are_counted_twice() -> None:
    verdict = compare(_ledger(175, w1=(7, 100), gone=(2, 50)), {"w1": Report(7, 100)})
    assert (verdict.lost, verdict.twice) == (0, 25)
    assert verdict.outside_ledger == 25


def test_a_counter_below_the_ledger_lost_hashes() -> None:
    verdict = compare(_ledger(120, w1=(7, 100), gone=(2, 50)), {"w1": Report(7, 100)})
    assert (verdict.lost, verdict.twice) == (30, 0)


def test_workers_that_are_gone_count_by_the_ledger_only() -> None:
    verdict = compare(_ledger(300, a=(10, 100), b=(3, 200)), {})
    assert verdict.workers == []
    assert verdict.gone == ["a", "b"]
    assert (verdict.lost, verdict.twice, verdict.ok) == (0, 0, True)


def test_verdict_lines_end_with_the_two_totals() -> None:
    verdict = compare(
        _ledger(175, w1=(7, 100), w2=(9, 50), gone=(1, 25)),
        {
            "w1": Report(7, 100),
            "w2": Report(8, 40),
        },
    )
    lines = verify.verdict_lines(verdict)
    assert lines[0].split() == ["WORKER", "CONFIRMED", "SEQ", "IN", "REDIS", "SEQ", "STATE"]
    assert lines[1].split() == ["w1", "100", "7", "100", "7", "ok"]
    assert lines[2].split() == ["w2", "40", "8", "50", "9", "in", "flight"]
    assert "workers compared: 1 of 2 reporting (1 in flight" in lines[3]
    assert lines[4] == "workers gone (counted by the ledger only): 1, 25 hashes"
    assert lines[5] == "redis: hashes 175, ledger 175"
    assert lines[-2:] == ["hashes lost: 0", "hashes counted twice: 0"]


# ---------------------------------------------------------------- parsing


def test_parse_ledger() -> None:
    document = {"hashes": 12, "workers": {"w1": {"seq": 3, "hashes": 12}}}
    assert verify.parse_ledger(document) == _ledger(12, w1=(3, 12))
    assert verify.parse_ledger({"hashes": 0, "workers": {}}) == Ledger(0)


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"hashes": 1},
        {"hashes": -1, "workers": {}},
        {"hashes": True, "workers": {}},
        {"hashes": "12", "workers": {}},
        {"hashes": 1, "workers": {"w1": 3}},
        {"hashes": 1, "workers": {"w1": {"seq": 1}}},
        {"hashes": 1, "workers": {"w1": {"seq": 1.5, "hashes": 1}}},
    ],
)
def test_parse_ledger_refuses_anything_else(document: Any) -> None:
    with pytest.raises(ValueError):
        verify.parse_ledger(document)


def test_reports_pair_seq_and_hashes_of_one_source() -> None:
    seq, hashes = verify.CONFIRMED_SEQ, verify.CONFIRMED_HASHES
    samples: list[verify.Sample] = [
        ("10.0.0.5:9100", seq, {"worker_id": "a"}, 7.0),
        ("10.0.0.5:9100", hashes, {"worker_id": "a"}, 100.0),
        ("10.0.0.6:9100", seq, {"worker_id": "b"}, 2.0),  # its hashes are missing: left out
        ("10.0.0.7:9100", "dockercoins_worker_loops_total", {"worker_id": "c"}, 9.0),
        ("10.0.0.8:9100", seq, {}, 1.0),  # no worker id
        # the same id from two sources (should not happen): the later flush wins
        ("10.0.0.9:9100", seq, {"worker_id": "a"}, 5.0),
        ("10.0.0.9:9100", hashes, {"worker_id": "a"}, 80.0),
    ]
    assert verify.reports_from_samples(samples) == {"a": Report(7, 100)}


class _Confirmed:
    def __init__(self, worker_id: str, seq: int, hashes: int) -> None:
        self.values = (worker_id, seq, hashes)

    def collect(self) -> Iterator[Metric]:
        worker_id, seq, hashes = self.values
        counter = CounterMetricFamily(
            "dockercoins_worker_confirmed_hashes", "confirmed", labels=["worker_id"]
        )
        counter.add_metric([worker_id], hashes)
        gauge = GaugeMetricFamily("dockercoins_worker_confirmed_seq", "seq", labels=["worker_id"])
        gauge.add_metric([worker_id], seq)
        yield counter
        yield gauge


def _metrics_page(worker_id: str, seq: int, hashes: int) -> str:
    registry = CollectorRegistry()
    registry.register(_Confirmed(worker_id, seq, hashes))
    return generate_latest(registry).decode()


def test_reports_from_a_prometheus_client_page() -> None:
    page = _metrics_page("node1-abc", 41, 1234)
    samples = verify.samples_from_text("http://w:9100/metrics", page)
    assert verify.reports_from_samples(samples) == {"node1-abc": Report(41, 1234)}


def test_reports_from_a_prometheus_vector() -> None:
    def series(name: str, worker_id: str, value: str) -> dict[str, Any]:
        labels = {"__name__": name, "instance": "10.0.1.9:9100", "worker_id": worker_id}
        return {"metric": labels, "value": [1700000000.0, value]}

    data = {
        "resultType": "vector",
        "result": [
            series(verify.CONFIRMED_SEQ, "w1", "12"),
            series(verify.CONFIRMED_HASHES, "w1", "345"),
            series(verify.CONFIRMED_SEQ, "w2", "NaN"),
        ],
    }
    assert verify.reports_from_samples(verify.samples_from_vector(data)) == {"w1": Report(12, 345)}


def test_metrics_url_takes_a_base_url_or_the_page() -> None:
    assert verify.metrics_url("http://127.0.0.1:9100") == "http://127.0.0.1:9100/metrics"
    assert verify.metrics_url("http://127.0.0.1:9100/") == "http://127.0.0.1:9100/metrics"
    assert verify.metrics_url("http://h:9100/metrics") == "http://h:9100/metrics"


# ---------------------------------------------------------------- sampling again


def test_sampling_again_settles_a_worker_that_flushed_meanwhile() -> None:
    # the worker's samples lag the ledger (a scrape every 5 s, a flush every second); the
    # ledger reads made while waiting catch the seq of the next sample
    # (one flush of 10 hashes per ledger read, however many reads the wait makes)
    clock = {"ledger": 9}
    reports = iter([Report(8, 80), Report(11, 110)])

    def read_ledger() -> Ledger:
        clock["ledger"] += 1
        seq = clock["ledger"]
        return _ledger(10 * seq, w=(seq, 10 * seq))

    verdict = verify.sample_until_settled(
        lambda: {"w": next(reports)}, read_ledger, tries=3, interval=0.02, poll=0.001
    )
    assert verdict.in_flight == []
    assert verdict.workers[0].state == verify.OK
    assert verdict.ok


def test_sampling_again_is_bounded() -> None:
    reads = {"reports": 0}

    def read_reports() -> dict[str, Report]:
        reads["reports"] += 1
        return {"w": Report(1, 10)}

    verdict = verify.sample_until_settled(
        read_reports, lambda: _ledger(50, w=(5, 50)), tries=3, interval=0.01, poll=0.005
    )
    assert reads["reports"] == 3
    assert [check.state for check in verdict.workers] == [verify.IN_FLIGHT]
    assert verdict.ok  # in flight is not counted twice


# ---------------------------------------------------------------- the command, on loopback


class FakeHTTP:
    """A loopback HTTP server answering path -> (status, content type, body); paths are
    changed by the test while it runs."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, str]] = {}
        self.queries: list[str] = []
        routes, queries = self.routes, self.queries

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                queries.extend(parse_qs(parsed.query).get("query", []))
                status, kind, body = routes.get(parsed.path, (404, "text/plain", "not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def json(self, path: str, document: Any, status: int = 200) -> None:
        self.routes[path] = (status, "application/json", json.dumps(document))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake() -> Iterator[FakeHTTP]:
    server = FakeHTTP()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sample again after a few milliseconds, not seconds."""
    monkeypatch.setattr(verify, "DIRECT_INTERVAL", 0.01)
    monkeypatch.setattr(verify, "PROMETHEUS_INTERVAL", 0.01)
    monkeypatch.setattr(verify, "LEDGER_POLL", 0.005)


def _serve_worker(fake: FakeHTTP, worker_id: str, seq: int, hashes: int) -> None:
    page = _metrics_page(worker_id, seq, hashes)
    fake.routes["/metrics"] = (200, "text/plain; version=0.0.4", page)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_verify_reads_workers_directly_and_finds_nothing_wrong(
    fake: FakeHTTP, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_worker(fake, "w1", 7, 100)
    fake.json(
        "/ledger",
        {
            "hashes": 150,
            "workers": {"w1": {"seq": 7, "hashes": 100}, "old": {"seq": 2, "hashes": 50}},
        },
    )
    code, out, _ = _run(["--webui", fake.url, "--worker-metrics", fake.url], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == ["w1", "100", "7", "100", "7", "ok"]
    assert "workers gone (counted by the ledger only): 1, 50 hashes" in lines
    assert lines[-2:] == ["hashes lost: 0", "hashes counted twice: 0"]


def test_verify_exits_1_for_hashes_counted_twice(
    fake: FakeHTTP, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_worker(fake, "w1", 7, 100)
    fake.json("/ledger", {"hashes": 140, "workers": {"w1": {"seq": 7, "hashes": 110}}})
    code, out, _ = _run(["--webui", fake.url, "--worker-metrics", f"{fake.url}/metrics"], capsys)
    assert code == 1
    assert out.splitlines()[-2:] == ["hashes lost: 0", "hashes counted twice: 40"]


def test_verify_exits_1_for_hashes_lost(fake: FakeHTTP, capsys: pytest.CaptureFixture[str]) -> None:
    _serve_worker(fake, "w1", 7, 100)
    fake.json("/ledger", {"hashes": 60, "workers": {"w1": {"seq": 5, "hashes": 60}}})
    code, out, _ = _run(["--webui", fake.url, "--worker-metrics", fake.url], capsys)
    assert code == 1
    assert out.splitlines()[-2:] == ["hashes lost: 40", "hashes counted twice: 0"]


def test_verify_through_prometheus(fake: FakeHTTP, capsys: pytest.CaptureFixture[str]) -> None:
    fake.json("/api/v1/status/buildinfo", {"status": "success", "data": {"version": "2.42"}})
    labels = {"instance": "10.0.1.9:9100", "worker_id": "w1"}
    vector = [
        {"metric": {"__name__": verify.CONFIRMED_SEQ, **labels}, "value": [1.0, "3"]},
        {"metric": {"__name__": verify.CONFIRMED_HASHES, **labels}, "value": [1.0, "30"]},
    ]
    fake.json(
        "/api/v1/query", {"status": "success", "data": {"resultType": "vector", "result": vector}}
    )
    fake.json("/ledger", {"hashes": 30, "workers": {"w1": {"seq": 3, "hashes": 30}}})
    code, out, _ = _run(["--webui", fake.url, "--prometheus", fake.url], capsys)
    assert code == 0
    assert out.splitlines()[1].split() == ["w1", "30", "3", "30", "3", "ok"]
    assert fake.queries == [verify.reports_query()]


def test_the_prometheus_query_takes_fresh_counts_of_both_from_one_evaluation() -> None:
    assert verify.reports_query(15) == (
        '{__name__=~"dockercoins_worker_confirmed_seq|dockercoins_worker_confirmed_hashes_total"}'
        " and on (instance, worker_id) "
        "(time() - timestamp(dockercoins_worker_confirmed_seq) < 15)"
    )


def _one_line_error(code: int, err: str) -> str:
    assert code == 1
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[-1].startswith("dockercoins: error: ")
    return lines[-1]


def test_verify_with_no_web_ui_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = _run(["--webui", url, "--worker-metrics", url], capsys)
    assert _one_line_error(code, err) == f"dockercoins: error: the web UI at {url} does not answer"


def test_verify_with_an_unreachable_worker_is_one_line(
    fake: FakeHTTP, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.json("/ledger", {"hashes": 0, "workers": {}})
    gone = f"http://127.0.0.1:{free_port()}"
    code, _, err = _run(["--webui", fake.url, "--worker-metrics", gone], capsys)
    line = _one_line_error(code, err)
    assert line.startswith(f"dockercoins: error: the worker metrics at {gone}/metrics cannot")


def test_verify_against_a_web_ui_without_ledger_is_one_line(
    fake: FakeHTTP, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_worker(fake, "w1", 0, 0)
    code, _, err = _run(["--webui", fake.url, "--worker-metrics", fake.url], capsys)
    assert "has no /ledger" in _one_line_error(code, err)


def test_verify_when_redis_is_down_is_one_line(
    fake: FakeHTTP, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_worker(fake, "w1", 0, 0)
    fake.json("/ledger", {"detail": "redis unavailable"}, status=503)
    code, _, err = _run(["--webui", fake.url, "--worker-metrics", fake.url], capsys)
    assert "cannot read the ledger (503" in _one_line_error(code, err)


def test_verify_without_prometheus_is_one_line(
    fake: FakeHTTP, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.json("/ledger", {"hashes": 0, "workers": {}})
    nothing = f"http://127.0.0.1:{free_port()}"
    code, _, err = _run(["--webui", fake.url, "--prometheus", nothing], capsys)
    line = _one_line_error(code, err)
    assert f"no Prometheus answered at {nothing}" in line
    assert "--worker-metrics" in line
