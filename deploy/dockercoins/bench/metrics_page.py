"""One /metrics page, read with prometheus_client's parser: sample values by name and
labels, and what a histogram says about the window between two reads (mean, quantile)."""

from __future__ import annotations

import math
from dataclasses import dataclass

Key = tuple[str, frozenset[tuple[str, str]]]


class MetricsUnreadable(Exception):
    """A /metrics page that cannot be fetched or parsed; the message is one line."""


@dataclass(frozen=True)
class MetricsPage:
    """Every sample of one page: {(sample name, its labels): value}."""

    samples: dict[Key, float]

    @classmethod
    def parse(cls, text: str) -> MetricsPage:
        from prometheus_client.parser import text_string_to_metric_families

        samples: dict[Key, float] = {}
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        except ValueError as error:
            raise MetricsUnreadable(f"not the Prometheus text format: {error}") from error
        return cls(samples)

    @classmethod
    def fetch(cls, url: str, timeout: float = 5.0) -> MetricsPage:
        import httpx

        try:
            answer = httpx.get(url, timeout=timeout, trust_env=False)
        except httpx.HTTPError as error:
            raise MetricsUnreadable(f"{url}: {type(error).__name__}: {error}") from error
        if answer.status_code != 200:
            raise MetricsUnreadable(f"{url}: HTTP {answer.status_code}")
        return cls.parse(answer.text)

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly these labels; 0.0 when the page has none."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def buckets(self, histogram: str, **labels: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of every bucket of `histogram` with `labels`,
        by bound (+Inf last)."""
        wanted = set(labels.items())
        found = [
            (float(dict(key)["le"]), value)
            for (name, key), value in self.samples.items()
            if name == f"{histogram}_bucket" and wanted <= set(key) and len(key) == len(wanted) + 1
        ]
        return sorted(found)


@dataclass(frozen=True)
class HistogramWindow:
    """What a histogram observed between two pages: count, sum and per-bucket counts."""

    count: float
    total: float
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count), +Inf last

    @classmethod
    def between(
        cls, before: MetricsPage, after: MetricsPage, histogram: str, **labels: str
    ) -> HistogramWindow:
        earlier = dict(before.buckets(histogram, **labels))
        buckets = [
            (bound, count - earlier.get(bound, 0.0))
            for bound, count in after.buckets(histogram, **labels)
        ]
        return cls(
            count=after.value(f"{histogram}_count", **labels)
            - before.value(f"{histogram}_count", **labels),
            total=after.value(f"{histogram}_sum", **labels)
            - before.value(f"{histogram}_sum", **labels),
            buckets=buckets,
        )

    @classmethod
    def pooled(cls, windows: list[HistogramWindow]) -> HistogramWindow:
        """One window observing what all of `windows` did (counts added bucket by bucket)."""
        buckets: dict[float, float] = {}
        for window in windows:
            for bound, count in window.buckets:
                buckets[bound] = buckets.get(bound, 0.0) + count
        return cls(
            count=sum(window.count for window in windows),
            total=sum(window.total for window in windows),
            buckets=sorted(buckets.items()),
        )

    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile as Prometheus' histogram_quantile() estimates it: linear within
        the bucket where the rank falls; the highest finite bound if it falls in +Inf."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower
