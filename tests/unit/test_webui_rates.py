"""webui's reading of Prometheus' answers for /rng-rates, and its route labels."""

from __future__ import annotations

from typing import Any

import pytest
from dockercoins.swarm import prometheus
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send
from webui_metrics import UNMATCHED, route_template
from webui_rates import RNG_RATES_QUERY, RatesError, Series, answer, one_line, parse_rates


def vector(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    result = [{"metric": labels, "value": [1795790000.123, value]} for labels, value in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_the_query_is_the_shared_one() -> None:
    """The page's chart and the tool's `status --prometheus` ask the same PromQL."""
    assert prometheus.rate_query(prometheus.RNG_REQUESTS, 15) == RNG_RATES_QUERY


def test_series_are_labelled_by_node_and_sorted() -> None:
    payload = vector(
        ({"instance": "10.0.1.7:80", "node": "node2"}, "9.5"),
        ({"instance": "10.0.1.5:80", "node": "node1"}, "10"),
    )
    assert parse_rates(payload) == [
        Series(label="node1", instance="10.0.1.5:80", rate=10.0),
        Series(label="node2", instance="10.0.1.7:80", rate=9.5),
    ]


def test_the_instance_is_the_label_without_a_node() -> None:
    payload = vector(
        ({"instance": "10.0.1.9:80"}, "3.25"), ({"instance": "10.0.1.8:80", "node": ""}, "0")
    )
    assert parse_rates(payload) == [
        Series(label="10.0.1.8:80", instance="10.0.1.8:80", rate=0.0),
        Series(label="10.0.1.9:80", instance="10.0.1.9:80", rate=3.25),
    ]


def test_two_instances_on_one_node_are_told_apart() -> None:
    payload = vector(
        ({"instance": "10.0.1.5:80", "node": "node1"}, "1"),
        ({"instance": "10.0.1.6:80", "node": "node1"}, "2"),
        ({"instance": "10.0.1.7:80", "node": "node2"}, "3"),
    )
    assert [series.label for series in parse_rates(payload)] == [
        "node1 (10.0.1.5:80)",
        "node1 (10.0.1.6:80)",
        "node2",
    ]


def test_nothing_scraped_yet_is_no_series() -> None:
    assert parse_rates(vector()) == []


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
def test_values_that_cannot_be_drawn_are_left_out(value: str) -> None:
    payload = vector(({"instance": "a:80"}, value), ({"instance": "b:80"}, "1.5"))
    assert parse_rates(payload) == [Series(label="b:80", instance="b:80", rate=1.5)]


def test_an_error_answer_gives_its_reason_on_one_line() -> None:
    payload = {"status": "error", "errorType": "bad_data", "error": "parse error:\nunexpected }"}
    with pytest.raises(RatesError) as caught:
        parse_rates(payload)
    assert str(caught.value) == "Prometheus answered an error: parse error: unexpected }"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "up",
        {"status": "success"},
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        {"status": "success", "data": {"resultType": "vector", "result": {}}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "1"]}]}},
        vector(({"instance": "a:80"}, "fast")),
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": 1}]},
        },
    ],
)
def test_answers_of_another_shape_are_refused(payload: Any) -> None:
    with pytest.raises(RatesError, match="unexpected"):
        parse_rates(payload)


def test_the_json_shape() -> None:
    available = answer([Series(label="node1", instance="10.0.1.5:80", rate=2.5)])
    assert set(available) == {"available", "reason", "series", "now"}
    assert available["available"] is True
    assert available["reason"] is None
    assert available["series"] == [{"label": "node1", "instance": "10.0.1.5:80", "rate": 2.5}]
    assert isinstance(available["now"], float)
    unavailable = answer(None, "Prometheus unreachable: refused")
    assert (unavailable["available"], unavailable["reason"], unavailable["series"]) == (
        False,
        "Prometheus unreachable: refused",
        [],
    )


def test_reasons_are_one_short_line() -> None:
    assert one_line("a\n  b\tc ") == "a b c"
    long = one_line("x" * 1000)
    assert len(long) == 200
    assert long.endswith("…")


def _endpoint() -> None:
    """A stand-in endpoint: route matching never calls it."""


async def _static(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in for the static files: route matching never calls it."""


ROUTES = [
    Route("/", _endpoint, methods=["GET"]),
    Route("/json", _endpoint, methods=["GET"]),
    Mount("/", app=_static),
]


@pytest.mark.parametrize(
    ("method", "path", "label"),
    [
        ("GET", "/", "/"),
        ("GET", "/json", "/json"),
        ("GET", "/index.html", "/{path}"),
        ("GET", "/some/deep/path/42", "/{path}"),
        ("POST", "/json", "/{path}"),  # the static files take it (and answer 405)
    ],
)
def test_route_labels_are_templates(method: str, path: str, label: str) -> None:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    assert route_template(ROUTES, scope) == label


def test_a_request_no_route_takes_is_unmatched() -> None:
    scope = {"type": "http", "method": "GET", "path": "/json", "root_path": ""}
    assert route_template(ROUTES[:1], scope) == UNMATCHED
    scope["method"] = "POST"
    assert route_template(ROUTES[1:2], scope) == "/json"  # a partial match: 405 from /json
