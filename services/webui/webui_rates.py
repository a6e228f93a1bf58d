"""rng answers per second per instance, asked of Prometheus' HTTP API for GET /rng-rates.

The answer is {"available": bool, "reason": str | None, "series": [{"label", "instance",
"rate"}], "now": Unix time}; when Prometheus is not configured, unreachable or answers an
error, available is false and reason says why in one line.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

# rng answers/s per instance (IP:port), with the node each instance runs on when it has one.
# The info series joined is the newest per instance: an address that comes back on another
# node after a redeploy would otherwise match two series (a "duplicate series" error).
RNG_RATES_QUERY = (
    "sum by (instance, node) (rate(dockercoins_rng_requests_total[15s])"
    " * on (instance) group_left(node)"
    " (topk by (instance) (1, timestamp(dockercoins_instance_info)) * 0 + 1))"
)
QUERY_PATH = "/api/v1/query"
NOT_CONFIGURED = "Prometheus not configured (PROMETHEUS_URL is unset)"
MAX_REASON = 200


class RatesError(Exception):
    """Prometheus cannot give the rates right now; the message is the one-line reason."""


@dataclass(frozen=True)
class Series:
    label: str  # the node when known, else the instance
    instance: str  # IP:port
    rate: float  # answers per second


def one_line(text: str) -> str:
    """`text` on one line, at most MAX_REASON characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_REASON else flat[: MAX_REASON - 1] + "…"


def parse_rates(payload: Any) -> list[Series]:
    """The series of a /api/v1/query answer (a vector), sorted by label then instance; two
    instances on one node are told apart as "node (instance)". RatesError when the answer is
    an error or not shaped like one."""
    if not isinstance(payload, dict):
        raise RatesError("Prometheus answered something unexpected (not a JSON object)")
    if payload.get("status") != "success":
        error = payload.get("error") or payload.get("errorType") or "no reason given"
        raise RatesError(one_line(f"Prometheus answered an error: {error}"))
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise RatesError("Prometheus answered something unexpected (not a vector)")
    result = data.get("result")
    if not isinstance(result, list):
        raise RatesError("Prometheus answered something unexpected (no result list)")
    found = []
    for item in result:
        try:
            labels, (_, text) = item["metric"], item["value"]
            instance = str(labels.get("instance", ""))
            rate = float(text)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RatesError("Prometheus answered something unexpected (a bad sample)") from None
        if not math.isfinite(rate):
            continue  # NaN or Inf cannot be drawn (nor sent as JSON)
        label = str(labels.get("node") or "") or instance or "(unknown)"
        found.append(Series(label=label, instance=instance, rate=rate))
    per_label = Counter(series.label for series in found)
    found = [
        replace(one, label=f"{one.label} ({one.instance})") if per_label[one.label] > 1 else one
        for one in found
    ]
    return sorted(found, key=lambda series: (series.label, series.instance))


def answer(series: list[Series] | None, reason: str | None = None) -> dict[str, Any]:
    """The /rng-rates JSON: available with `series`, or unavailable because of `reason`."""
    return {
        "available": series is not None,
        "reason": None if series is not None else reason,
        "series": [asdict(one) for one in series or []],
        "now": time.time(),
    }


# stdlib urllib in a thread, not httpx: httpx, httpcore and certifi would take the webui
# image past base + 30 MB for one GET every few seconds.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxies: a neighbour


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET `url`: (status, body), error statuses included (Prometheus explains them in JSON)."""
    try:
        with _OPENER.open(url, timeout=timeout) as reply:
            return int(reply.status), bytes(reply.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


async def query_rates(base_url: str, step_timeout: float) -> list[Series]:
    """Ask Prometheus at `base_url` (each network step bounded by `step_timeout` s); RatesError
    says why not."""
    query = urllib.parse.urlencode({"query": RNG_RATES_QUERY})
    url = f"{base_url.rstrip('/')}{QUERY_PATH}?{query}"
    try:
        status, body = await asyncio.to_thread(_get, url, step_timeout)
    except TimeoutError:
        raise RatesError("Prometheus unreachable: no answer in time") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise RatesError(one_line(f"Prometheus unreachable: {reason}")) from None
    try:
        payload = json.loads(body)
    except ValueError:
        raise RatesError(f"Prometheus answered {status} without JSON") from None
    return parse_rates(payload)
