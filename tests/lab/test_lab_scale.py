"""The lab at scale, lean on the 3-node lab: `lab status` shows each node's memory, and
`dockercoins bench scaling` for k = 1, 2 with short runs writes its table, JSON and PNG of
the right shape and leaves no node label, no placement constraint and the scale as it
found it. No speed assertions: the benchmark prints numbers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockercoins.bench.scaling import RNG_CONSTRAINT, RNG_LABEL
from dockercoins.lab.state import LabState

from tests.support.lab import cli, ok

pytestmark = pytest.mark.lab

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OURS = ("redis", "hasher", "rng", "webui", "worker")
SHORT = ["--rng-nodes", "1,2", "--duration", "6", "--warmup", "3", "--timeout", "240"]


@pytest.fixture(scope="module")
def dockercoins(lab: LabState, manager: Any) -> Iterator[None]:
    """DockerCoins deployed on the lab (ship + deploy when it is not); left deployed for
    the next module (test_metrics.py uses it as it is)."""
    if not {s.name for s in manager.services.list()} >= set(OURS):
        ok(cli(lab, "ship"))
        ok(cli(lab, "deploy", "--timeout", "240"))
    yield


def rng_and_worker(client: Any) -> tuple[dict[str, Any], list[str], int]:
    """rng's Mode, rng's placement constraints and the worker replicas now."""
    specs = {s.name: s.attrs["Spec"] for s in client.services.list() if s.name in OURS}
    rng = specs["rng"]
    constraints = list((rng["TaskTemplate"].get("Placement") or {}).get("Constraints") or [])
    return rng["Mode"], constraints, specs["worker"]["Mode"]["Replicated"]["Replicas"]


def labelled_nodes(client: Any) -> list[str]:
    return sorted(
        node.attrs["Description"]["Hostname"]
        for node in client.nodes.list()
        if RNG_LABEL in (node.attrs["Spec"].get("Labels") or {})
    )


def test_lab_status_shows_memory_per_node(lab: LabState, dockercoins: None) -> None:
    shown = ok(cli(lab, "lab", "status", timeout=120)).splitlines()
    header = next(i for i, line in enumerate(shown) if line.startswith("MEMORY"))
    assert shown[header].split() == [
        "MEMORY",
        "DOCKERD",
        "CONTAINERD+SHIMS",
        "CONTAINERS",
        "NODE",
        "TOTAL",
    ]
    rows = {line.split()[0]: line.split() for line in shown[header + 1 : header + 5]}
    assert sorted(rows) == sorted([*(node.name for node in lab.nodes), "all"])
    for node in lab.nodes:
        # node1 102 MB 39 MB (2 shims) 87 MB 276 MB
        cells = rows[node.name]
        assert cells[2] == cells[4] == cells[8] == cells[10] == "MB", cells
        dockerd, containerd, containers, total = (int(cells[i]) for i in (1, 3, 7, 9))
        assert dockerd > 0 and containerd > 0  # resident
        assert total >= dockerd + containerd + containers - 2  # rounding
    # DockerCoins runs containers on some node: its cgroup uses memory
    assert max(int(rows[node.name][7]) for node in lab.nodes) > 0
    assert rows["all"][1:] and rows["all"][-1] == "MB"


def test_short_scaling_run_writes_its_files_and_leaves_no_label_or_constraint(
    lab: LabState, manager: Any, dockercoins: None, tmp_path: Path
) -> None:
    before = rng_and_worker(manager)
    assert RNG_CONSTRAINT not in before[1]
    assert labelled_nodes(manager) == []
    out = tmp_path / "results"
    stdout = ok(cli(lab, "bench", "scaling", *SHORT, "--out", str(out), timeout=600))

    # everything put back: no label, no constraint, rng's mode and the worker scale
    assert labelled_nodes(manager) == []
    assert rng_and_worker(manager) == before

    # the JSON: one result per k, rng on the first k nodes, ceilings from the delays
    document = json.loads((out / "scaling.json").read_text())
    assert document["format"] == "dockercoins-bench-scaling/1"
    assert document["ks"] == [1, 2]
    assert document["nodes"] == len(lab.nodes)
    assert document["settings"]["label"] == RNG_LABEL
    assert "dockercoins bench scaling --rng-nodes 1,2" in document["settings"]["command"]
    delays = document["delays"]
    per_task = delays["rng_concurrency"] / delays["rng"]
    loop = delays["worker"] + delays["rng"] + delays["hasher"]
    results = document["results"]
    assert [r["k"] for r in results] == [1, 2]
    for result in results:
        k = result["k"]
        assert result["rng_nodes"] == [f"node{i}" for i in range(1, k + 1)]
        assert result["rng_tasks"] == k
        assert result["rng_ceiling"] == pytest.approx(k * per_task)
        worker_ceiling = result["workers"] * delays["worker_concurrency"] / loop
        assert result["worker_ceiling"] == pytest.approx(worker_ceiling)
        assert worker_ceiling > result["rng_ceiling"]  # rng is the limit by design
        assert result["hashes_per_second"] >= 0
        assert 0 <= result["min"] <= result["p10"] <= result["p90"] <= result["max"]
        assert len(result["samples"]) >= 3
        assert result["meets_target"] in (True, False)
        cpu = result["cpu"]  # the lab runs on this host: CPU per service and node
        assert cpu is not None and cpu["cpus"] >= 1
        assert set(cpu["by_node"]) <= {node.name for node in lab.nodes}
        assert {"daemons", "worker"} <= set(cpu["by_service"])
    assert results[1]["workers"] > results[0]["workers"]

    # the table, printed and written; the PNG
    table = (out / "scaling.md").read_text()
    assert table.strip() in stdout
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:4]] == ["1", "2"]
    assert (out / "scaling.png").read_bytes().startswith(PNG_MAGIC)
