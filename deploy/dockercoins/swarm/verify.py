"""`verify`: nothing lost, nothing counted twice.

Each worker applies every flush to Redis once, keyed by its worker id and the flush's
sequence number, and Redis keeps a ledger of it: per worker the last sequence number
applied and the hashes counted so far (`dockercoins:ledger:seq`, `dockercoins:ledger:hashes`,
served with the `hashes` counter by the web UI's GET /ledger). Each worker says on its
/metrics what Redis confirmed to it: `dockercoins_worker_confirmed_seq` and
`dockercoins_worker_confirmed_hashes_total`, labelled with its `worker_id`.

The comparison (compare, pure): for a worker that reports (seq, confirmed) and whose ledger
entry is (lseq, lhashes),
- lost = max(0, confirmed - lhashes): Redis has less than it acknowledged;
- at lseq == seq, counted twice = max(0, lhashes - confirmed);
- at lseq > seq the worker flushed again since it was sampled: the comparison uses the
  ledger as it was read at seq if a read saw it, else the worker is "in flight" (compared
  for loss only) and is sampled again;
- over all: hashes counted outside the ledger (`hashes` above the ledger's sum) are
  counted twice, a `hashes` below it is lost. Workers that no longer report (stopped,
  their node gone) count by their ledger entry only.

The workers are always read before the ledger, so a worker's sample is never ahead of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.names import METRICS_PATH, WEBUI_PUBLISHED_PORT
from dockercoins.swarm import prometheus
from dockercoins.swarm.connect import published_urls

if TYPE_CHECKING:
    import httpx

CONFIRMED_HASHES = "dockercoins_worker_confirmed_hashes_total"
CONFIRMED_SEQ = "dockercoins_worker_confirmed_seq"
WORKER_ID = "worker_id"
LEDGER_PATH = "/ledger"

TIMEOUT = 3.0  # seconds per request
# Sampling again: through Prometheus a worker's sample is up to one scrape interval old,
# so wait about that long (reading the ledger meanwhile); read directly, a moment.
PROMETHEUS_TRIES = 4
PROMETHEUS_INTERVAL = 5.0  # prometheus_service.SCRAPE_INTERVAL
FRESH = 3 * PROMETHEUS_INTERVAL  # a worker's counts older than this: not a live worker
DIRECT_TRIES = 5
DIRECT_INTERVAL = 0.5
LEDGER_POLL = 0.5  # seconds between ledger reads while waiting


# --- the comparison (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What a worker says Redis confirmed: its last flush's sequence number and the hashes."""

    seq: int
    confirmed: int


@dataclass(frozen=True)
class Entry:
    """A worker's entry in Redis's ledger: the last sequence number applied, the hashes."""

    seq: int
    hashes: int


@dataclass(frozen=True)
class Ledger:
    """GET /ledger: the `hashes` counter and the ledger's entry per worker id."""

    hashes: int
    workers: dict[str, Entry] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """The hashes the ledger accounts for."""
        return sum(entry.hashes for entry in self.workers.values())


# Ledger reads kept while sampling: worker id -> {seq: hashes at that seq}
Seen = dict[str, dict[int, int]]

OK = "ok"
LOST = "lost"
TWICE = "counted twice"
IN_FLIGHT = "in flight"
NOT_IN_LEDGER = "not in the ledger"
NO_FLUSH = "nothing flushed yet"
BEHIND = "behind"  # Redis misses a confirmed flush that counted no hash


@dataclass(frozen=True)
class WorkerCheck:
    worker_id: str
    state: str
    report: Report
    entry: Entry | None
    lost: int = 0
    twice: int = 0


@dataclass(frozen=True)
class Verdict:
    workers: list[WorkerCheck]  # the workers that report, by id
    gone: list[str]  # ledger entries of workers that do not report
    gone_hashes: int  # their hashes
    hashes: int
    ledger_total: int
    lost: int
    twice: int

    @property
    def in_flight(self) -> list[WorkerCheck]:
        return [check for check in self.workers if check.state == IN_FLIGHT]

    @property
    def outside_ledger(self) -> int:
        """`hashes` minus what the ledger accounts for (negative: the counter lost some)."""
        return self.hashes - self.ledger_total

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.twice == 0


def remember(seen: Seen, ledger: Ledger) -> None:
    """Add a ledger read to `seen`."""
    for worker_id, entry in ledger.workers.items():
        seen.setdefault(worker_id, {})[entry.seq] = entry.hashes


def check_worker(
    worker_id: str, report: Report, entry: Entry | None, seen: Mapping[int, int]
) -> WorkerCheck:
    """One worker's report against its ledger entry (and earlier reads of it)."""
    if entry is None:
        if report.seq == 0 and report.confirmed == 0:
            return WorkerCheck(worker_id, NO_FLUSH, report, None)
        # Redis confirmed flushes of a worker it has no entry for
        return WorkerCheck(worker_id, NOT_IN_LEDGER, report, None, lost=max(0, report.confirmed))
    lost = max(0, report.confirmed - entry.hashes)
    twice = 0
    if entry.seq == report.seq:
        twice = max(0, entry.hashes - report.confirmed)
    elif entry.seq > report.seq:
        then = seen.get(report.seq)
        if then is None:
            return WorkerCheck(worker_id, IN_FLIGHT, report, entry, lost=lost)
        lost = max(lost, report.confirmed - then)
        twice = max(0, then - report.confirmed)
    # entry.seq < report.seq: Redis lost flushes it had confirmed; `lost` counts their hashes
    state = LOST if lost else (TWICE if twice else OK)
    if entry.seq < report.seq and not lost:
        state = BEHIND
    return WorkerCheck(worker_id, state, report, entry, lost=lost, twice=twice)


def compare(ledger: Ledger, reports: Mapping[str, Report], seen: Seen | None = None) -> Verdict:
    """The workers' reports against Redis's ledger (read after them), and `hashes` against
    the ledger's sum. `seen`: earlier ledger reads, for workers that flushed again since."""
    seen = seen or {}
    checks = [
        check_worker(worker_id, report, ledger.workers.get(worker_id), seen.get(worker_id, {}))
        for worker_id, report in sorted(reports.items())
    ]
    gone = sorted(set(ledger.workers) - set(reports))
    gone_hashes = sum(ledger.workers[worker_id].hashes for worker_id in gone)
    total = ledger.total
    lost = sum(check.lost for check in checks) + max(0, total - ledger.hashes)
    twice = sum(check.twice for check in checks) + max(0, ledger.hashes - total)
    return Verdict(checks, gone, gone_hashes, ledger.hashes, total, lost, twice)


# --- parsing (pure) ---------------------------------------------------------------------------


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is not a count: {value!r}")
    return value


def parse_ledger(document: Any) -> Ledger:
    """A Ledger from GET /ledger's JSON; ValueError (one line) for anything else."""
    if not isinstance(document, Mapping) or not isinstance(document.get("workers"), Mapping):
        raise ValueError("expected {'hashes': int, 'workers': {worker_id: {seq, hashes}}}")
    workers = {}
    for worker_id, item in document["workers"].items():
        if not isinstance(item, Mapping):
            raise ValueError(f"worker {worker_id!r}: expected {{'seq': int, 'hashes': int}}")
        workers[str(worker_id)] = Entry(
            seq=_count(item.get("seq"), f"worker {worker_id!r}'s seq"),
            hashes=_count(item.get("hashes"), f"worker {worker_id!r}'s hashes"),
        )
    return Ledger(hashes=_count(document.get("hashes"), "hashes"), workers=workers)


Sample = tuple[str, str, Mapping[str, str], float]  # (source, metric name, labels, value)


def reports_from_samples(samples: Iterable[Sample]) -> dict[str, Report]:
    """worker id -> Report from samples of CONFIRMED_SEQ and CONFIRMED_HASHES (other names
    ignored). A sample's source (its instance or URL) pairs the two; a worker with only one
    of them is left out; two sources with one id (should not happen): the later flush."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for source, name, labels, value in samples:
        worker_id = labels.get(WORKER_ID)
        if name not in (CONFIRMED_SEQ, CONFIRMED_HASHES) or not worker_id:
            continue
        if not math.isfinite(value) or value < 0:
            continue
        found.setdefault((source, worker_id), {})[name] = int(value)
    reports: dict[str, Report] = {}
    for (_, worker_id), values in sorted(found.items()):
        if CONFIRMED_SEQ not in values or CONFIRMED_HASHES not in values:
            continue
        report = Report(seq=values[CONFIRMED_SEQ], confirmed=values[CONFIRMED_HASHES])
        if worker_id not in reports or report.seq > reports[worker_id].seq:
            reports[worker_id] = report
    return reports


def samples_from_vector(data: Any) -> list[Sample]:
    """Samples from the `data` of a Prometheus instant query (a vector)."""
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        raise prometheus.Unavailable("Prometheus did not answer with an instant vector")
    samples: list[Sample] = []
    for series in data.get("result") or ():
        labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
        try:
            value = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        samples.append((labels.get("instance", ""), labels.get("__name__", ""), labels, value))
    return samples


def samples_from_text(source: str, text: str) -> list[Sample]:
    """Samples from a /metrics page (Prometheus text format); ValueError if it is not."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (source, sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


# --- the report (pure) ------------------------------------------------------------------------


def verdict_lines(verdict: Verdict) -> list[str]:
    """What `verify` prints: a row per reporting worker, the workers gone, the totals."""
    lines = []
    if verdict.workers:
        rows = [["WORKER", "CONFIRMED", "SEQ", "IN REDIS", "SEQ", "STATE"]]
        for check in verdict.workers:
            entry = check.entry
            rows.append(
                [
                    check.worker_id,
                    str(check.report.confirmed),
                    str(check.report.seq),
                    str(entry.hashes) if entry else "-",
                    str(entry.seq) if entry else "-",
                    check.state
                    + (f" {check.lost}" if check.lost else "")
                    + (f" {check.twice}" if check.twice else ""),
                ]
            )
        lines += ui.table(rows)
    else:
        lines.append("no worker reports its confirmed counts (none running, or none scraped yet)")
    compared = len(verdict.workers) - len(verdict.in_flight)
    lines.append(
        f"workers compared: {compared} of {len(verdict.workers)} reporting"
        + (
            f" ({len(verdict.in_flight)} in flight: they flushed again between the samples, "
            "checked for loss only)"
            if verdict.in_flight
            else ""
        )
    )
    if verdict.gone:
        lines.append(
            f"workers gone (counted by the ledger only): {len(verdict.gone)}, "
            f"{verdict.gone_hashes} hashes"
        )
    outside = verdict.outside_ledger
    lines.append(
        f"redis: hashes {verdict.hashes}, ledger {verdict.ledger_total}"
        + (f" ({outside:+d} outside the ledger)" if outside else "")
    )
    lines.append(f"hashes lost: {verdict.lost}")
    lines.append(f"hashes counted twice: {verdict.twice}")
    return lines


# --- reading ----------------------------------------------------------------------------------


def _short(error: Exception) -> str:
    """An HTTP failure in a few words: the status answered, else the kind of error."""
    import httpx

    if isinstance(error, httpx.HTTPStatusError):
        return f"it answered {error.response.status_code}"
    return type(error).__name__


def read_ledger(http: httpx.Client, url: str) -> Ledger:
    """GET url/ledger; UserError (one line) when it cannot be read."""
    import httpx

    try:
        answer = http.get(f"{url}{LEDGER_PATH}")
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise UserError(f"the web UI at {url} does not answer ({_short(error)})") from error
    if answer.status_code == 404:
        raise UserError(
            f"the web UI at {url} has no {LEDGER_PATH}: its image predates the ledger "
            "(`dockercoins ship`, then `dockercoins deploy`)"
        )
    if answer.status_code != 200:
        text = " ".join(answer.text.split())[:200]
        raise UserError(
            f"the web UI at {url} cannot read the ledger ({answer.status_code}: {text})"
        )
    try:
        return parse_ledger(answer.json())
    except ValueError as error:
        raise UserError(f"the web UI at {url} answered {LEDGER_PATH} oddly: {error}") from error


def locate_webui(http: httpx.Client, explicit: str | None) -> str:
    """The first web UI URL that answers (the given one, else loopback and the lab's
    nodes, as `status` reads /json); UserError naming them all."""
    import httpx

    tried = published_urls(explicit, WEBUI_PUBLISHED_PORT)
    for url in tried:
        try:
            http.get(f"{url}/", timeout=prometheus.CONNECT_TIMEOUT)
        except (httpx.HTTPError, httpx.InvalidURL):
            continue
        return url
    if explicit:
        raise UserError(f"the web UI at {tried[0]} does not answer")
    raise UserError(f"no web UI answered at {', '.join(tried)} (give --webui URL)")


def metrics_url(url: str) -> str:
    """A worker's /metrics URL from what --worker-metrics was given (its base URL or the
    page itself)."""
    url = url.rstrip("/")
    return url if url.endswith(METRICS_PATH) else f"{url}{METRICS_PATH}"


def read_worker_pages(http: httpx.Client, urls: list[str]) -> dict[str, Report]:
    """Reports read straight from workers' /metrics pages; UserError (one line) naming the
    first one that cannot be read."""
    import httpx

    samples: list[Sample] = []
    for url in urls:
        try:
            answer = http.get(url)
            answer.raise_for_status()
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            why = _short(error)
            raise UserError(f"the worker metrics at {url} cannot be read ({why})") from error
        try:
            samples += samples_from_text(url, answer.text)
        except ValueError as error:
            raise UserError(f"{url} is not a Prometheus metrics page: {error}") from error
    return reports_from_samples(samples)


def reports_query(fresh: float = FRESH) -> str:
    """PromQL: both counts of every worker scraped in the last `fresh` seconds, in one
    evaluation (so a worker's two numbers come from the same scrape). Without the age
    limit, a Prometheus restarted on its old data (a `down` then `deploy` minutes later)
    still answers the last values of workers that are long gone, for five minutes."""
    return (
        f'{{__name__=~"{CONFIRMED_SEQ}|{CONFIRMED_HASHES}"}} and on (instance, {WORKER_ID}) '
        f"(time() - timestamp({CONFIRMED_SEQ}) < {fresh:g})"
    )


def read_prometheus(http: httpx.Client, url: str) -> dict[str, Report]:
    """Reports from Prometheus's latest scrape of every worker; UserError (one line)."""
    try:
        data = prometheus.query(http, url, reports_query())
        return reports_from_samples(samples_from_vector(data))
    except prometheus.Unavailable as why:
        raise UserError(f"cannot read the workers' counts from Prometheus: {why}") from why


@dataclass
class Source:
    """Where the workers' reports come from: Prometheus at `prometheus_url`, or `pages`."""

    prometheus_url: str | None = None
    pages: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.prometheus_url:
            return f"Prometheus at {self.prometheus_url}"
        return f"{len(self.pages)} worker metrics page(s)"

    def read(self, http: httpx.Client) -> dict[str, Report]:
        if self.prometheus_url:
            return read_prometheus(http, self.prometheus_url)
        return read_worker_pages(http, self.pages)


def sample_until_settled(
    read_reports: Callable[[], dict[str, Report]],
    read: Callable[[], Ledger],
    tries: int,
    interval: float,
    poll: float = LEDGER_POLL,
) -> Verdict:
    """Read the workers, then the ledger, and compare; while a worker is in flight or a
    count is off, read the ledger every `poll` s for `interval` s and try again, at most
    `tries` times. The last comparison is the answer."""
    seen: Seen = {}
    verdict: Verdict | None = None
    for attempt in range(max(1, tries)):
        reports = read_reports()
        ledger = read()
        remember(seen, ledger)
        verdict = compare(ledger, reports, seen)
        if (verdict.ok and not verdict.in_flight) or attempt == tries - 1:
            break
        until = time.monotonic() + interval
        while time.monotonic() < until:
            time.sleep(max(0.0, min(poll, until - time.monotonic())))
            remember(seen, read())
    assert verdict is not None
    return verdict


def verify(
    webui: str | None,
    worker_metrics: list[str] | None,
    prometheus_url: str | None,
) -> int:
    """Print the comparison; 0 when nothing is lost and nothing counted twice, else 1."""
    with prometheus.connection(TIMEOUT) as http:
        url = locate_webui(http, webui)
        if worker_metrics:
            source = Source(pages=[metrics_url(page) for page in worker_metrics])
            tries, interval = DIRECT_TRIES, DIRECT_INTERVAL
        else:
            try:
                located = prometheus.locate(prometheus_url, http)
            except prometheus.Unavailable as why:
                raise UserError(
                    f"cannot read the workers' counts: {why} (deployed with --no-metrics? "
                    "give --prometheus URL or --worker-metrics URL)"
                ) from why
            source = Source(prometheus_url=located)
            tries, interval = PROMETHEUS_TRIES, PROMETHEUS_INTERVAL
        ui.info(f"reading the workers' counts from {source.describe()}, the ledger from {url}")
        verdict = sample_until_settled(
            lambda: source.read(http), lambda: read_ledger(http, url), tries, interval
        )
    for line in verdict_lines(verdict):
        ui.result(line)
    return 0 if verdict.ok else 1
