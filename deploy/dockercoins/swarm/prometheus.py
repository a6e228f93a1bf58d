"""Prometheus's HTTP API, read-only, for `status` and `bench rng-modes`: where it answers,
instant queries, answers per second per instance, and the scrape targets.

A Prometheus that is not there (a deploy with metrics off, no forwarder) is a one-line
reason (Unavailable), never a failure of the command that asked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockercoins.names import PROMETHEUS_PORT
from dockercoins.swarm.connect import published_urls

if TYPE_CHECKING:
    import httpx

TIMEOUT = 2.0  # seconds per request: Prometheus answers these in milliseconds
CONNECT_TIMEOUT = 1.0  # a lab address where nothing listens any more
DEFAULT_WINDOW = 15.0  # seconds of rate(): three scrapes at 5 s
RNG_REQUESTS = "dockercoins_rng_requests_total"
WORKER_HASHES = "dockercoins_worker_hashes_total"


class Unavailable(Exception):
    """Prometheus could not be asked (nothing answers, not Prometheus, a refused query);
    the message is one line."""


@dataclass(frozen=True)
class InstanceRate:
    """One instance's rate per second. `label` names it as the page does: its node, else its
    `instance` (IP:port), and "node (instance)" when two instances share a node."""

    label: str
    instance: str
    rate: float
    node: str = ""  # the node's hostname, "" when the instance did not say


@dataclass(frozen=True)
class Target:
    """One scrape target: its job, its instance (IP:port), "up"/"down"/"unknown"."""

    job: str
    instance: str
    health: str
    last_error: str = ""


def candidates(explicit: str | None) -> list[str]:
    """Where to ask: the given URL, else loopback and the lab's node addresses."""
    return published_urls(explicit, PROMETHEUS_PORT)


# dockercoins_instance_info, one series per instance (address): the newest. After a redeploy
# an address can come back on another node while the old series lingers (a restarted
# Prometheus writes no staleness marker for what it no longer scrapes): joining on both would
# be a "duplicate series" error. Its value is 1, so it only labels the rate.
LATEST_INFO = "(topk by (instance) (1, timestamp(dockercoins_instance_info)) * 0 + 1)"


def rate_query(counter: str, window: float) -> str:
    """PromQL: `counter`'s rate per instance over `window` seconds (whole seconds, at least
    1), labelled with the instance's node from dockercoins_instance_info."""
    seconds = max(1, round(window))
    return (
        f"sum by (instance, node) (rate({counter}[{seconds}s]) "
        f"* on (instance) group_left(node) {LATEST_INFO})"
    )


# --- answers (pure: from the JSON documents the API returns) ----------------------------------


def api_data(document: Any) -> Any:
    """The `data` of an API answer; Unavailable with Prometheus's own error otherwise."""
    if not isinstance(document, Mapping) or "status" not in document:
        raise Unavailable("the answer is not from Prometheus's HTTP API")
    if document["status"] != "success":
        kind = document.get("errorType", "error")
        raise Unavailable(f"Prometheus refused the query ({kind}: {document.get('error', '')})")
    return document.get("data")


def parse_rates(data: Any) -> list[InstanceRate]:
    """InstanceRates from the `data` of a rate_query answer (a vector), by label then
    instance; series without an instance or with a rate that is not a finite number are
    left out."""
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        raise Unavailable("Prometheus did not answer with an instant vector")
    found: list[tuple[str, str, float]] = []
    for series in data.get("result") or ():
        labels = series.get("metric") or {}
        instance = str(labels.get("instance", ""))
        try:
            rate = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if instance and math.isfinite(rate):
            # Prometheus drops a label whose value is "": no node label, no node
            found.append((str(labels.get("node", "")), instance, rate))
    per_node = Counter(node for node, _, _ in found if node)
    rates = [
        InstanceRate(
            label=(f"{node} ({instance})" if per_node[node] > 1 else node) if node else instance,
            instance=instance,
            rate=rate,
            node=node,
        )
        for node, instance, rate in found
    ]
    return sorted(rates, key=lambda item: (item.label, item.instance))


def parse_targets(data: Any) -> list[Target]:
    """Targets from the `data` of /api/v1/targets (the active ones), by job then instance."""
    if not isinstance(data, Mapping):
        raise Unavailable("Prometheus did not list its targets")
    found: list[Target] = []
    for target in data.get("activeTargets") or ():
        labels = target.get("labels") or {}
        found.append(
            Target(
                job=str(labels.get("job", target.get("scrapePool", ""))),
                instance=str(labels.get("instance", "")),
                health=str(target.get("health", "unknown")),
                last_error=str(target.get("lastError", "")),
            )
        )
    return sorted(found, key=lambda item: (item.job, item.instance))


def total(rates: Sequence[InstanceRate]) -> float:
    return sum(item.rate for item in rates)


# --- asking -----------------------------------------------------------------------------------


@contextmanager
def connection(timeout: float = TIMEOUT) -> Iterator[httpx.Client]:
    """An httpx client with short timeouts, for a few requests in a row."""
    import httpx

    with httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
    ) as http:
        yield http


def get(http: httpx.Client, url: str, path: str, params: dict[str, str] | None = None) -> Any:
    """The `data` of GET url+path; Unavailable (one line) when that fails."""
    import httpx

    try:
        answer = http.get(f"{url}{path}", params=params)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise Unavailable(f"{url} does not answer ({type(error).__name__})") from error
    try:
        document = answer.json()
    except ValueError as error:
        raise Unavailable(f"{url} answered {answer.status_code}, not JSON") from error
    return api_data(document)


def locate(explicit: str | None, http: httpx.Client) -> str:
    """The first candidate URL where Prometheus answers; Unavailable naming them all."""
    tried = candidates(explicit)
    for url in tried:
        try:
            get(http, url, "/api/v1/status/buildinfo")
        except Unavailable:
            continue
        return url
    raise Unavailable(f"no Prometheus answered at {', '.join(tried)}")


def query(http: httpx.Client, url: str, promql: str, at: float | None = None) -> Any:
    """The `data` of an instant query, evaluated now or at Unix time `at`."""
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    return get(http, url, "/api/v1/query", params)


def fetch_rates(
    http: httpx.Client,
    url: str,
    counter: str,
    window: float = DEFAULT_WINDOW,
    at: float | None = None,
) -> list[InstanceRate]:
    """`counter`'s rate per instance over `window` seconds ending now or at `at`."""
    return parse_rates(query(http, url, rate_query(counter, window), at))


def rng_rates(
    url: str, window: float = DEFAULT_WINDOW, at: float | None = None
) -> list[InstanceRate] | None:
    """rng answers per second per instance; None when Prometheus cannot be asked."""
    try:
        with connection() as http:
            return fetch_rates(http, url, RNG_REQUESTS, window, at)
    except Unavailable:
        return None


def targets(url: str) -> list[Target] | None:
    """Prometheus's active scrape targets; None when it cannot be asked."""
    try:
        with connection() as http:
            return parse_targets(get(http, url, "/api/v1/targets"))
    except Unavailable:
        return None
