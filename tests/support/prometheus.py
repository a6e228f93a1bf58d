"""A real Prometheus server for tests: Debian's binary on a free loopback port, scraping the
loopback targets it is given every second, its data in a temporary directory."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import LOOPBACK, free_port, stop_process, wait_for

PROMETHEUS = "/usr/bin/prometheus"


def scrape_config(jobs: dict[str, list[str]], interval: str = "1s") -> dict[str, Any]:
    """A prometheus.yml (as JSON, which is YAML too): one static job per name, scraping its
    host:port targets at /metrics every `interval`."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_timeout": interval,
                "static_configs": [{"targets": targets}],
            }
            for job, targets in jobs.items()
        ],
    }


@dataclass
class PrometheusServer:
    """Prometheus scraping `jobs` ({job name: ["127.0.0.1:port", ...]}); start() returns when
    it answers /-/ready, stop() ends it. Its log is workdir/prometheus.log."""

    workdir: Path
    jobs: dict[str, list[str]]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        binary = shutil.which(PROMETHEUS)
        assert binary, "prometheus is not installed (scripts/install.sh installs it)"
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps(scrape_config(self.jobs), indent=2))
        storage = self.workdir / "prometheus-data"
        storage.mkdir(exist_ok=True)
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115
        with log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address={LOOPBACK}:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(self.ready, timeout=30, interval=0.2)
        except AssertionError:
            self.stop()
            raise

    def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.logs()
        return httpx.get(self.url + "/-/ready", timeout=1).status_code == 200

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        answer = httpx.get(self.url + "/api/v1/query", params={"query": promql}, timeout=5)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
        self.proc = None

    def logs(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""
