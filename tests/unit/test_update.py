"""`dockercoins update`: its arguments, the spec it writes, and how it reads an update's
outcome from the manager's answers (UpdateStatus, tasks), with API answers recorded on the
lab; the whole follow() loop against a scripted manager (no daemon, no sleeping)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockercoins import cli
from dockercoins.errors import UserError
from dockercoins.swarm import update
from dockercoins.swarm.read import Node
from dockercoins.swarm.specs import Images, Modes, service_spec

NODES = [
    Node("n1", "node1", "ready", "active", "manager", "10.9.0.2"),
    Node("n2", "node2", "ready", "active", "worker", "10.9.0.3"),
    Node("n3", "node3", "ready", "active", "worker", "10.9.0.4"),
]
OLD_IMAGE = "10.9.0.1:5000/dockercoins/hasher:latest@sha256:" + "a" * 64
BLAMED = "x7bq3m0f2k9d1c8e5h4j6n2p0"  # a swarm task id: 25 of [0-9a-z]
ROLLED_BACK = f"update rolled back due to failure or early termination of task {BLAMED}"


# ---------------------------------------------------------------- arguments


def test_env_items_parse_in_order_and_keep_everything_after_the_first_equals() -> None:
    assert update.parse_env(["PORT=81", "URL=http://a/?b=c", "EMPTY="]) == {
        "PORT": "81",
        "URL": "http://a/?b=c",
        "EMPTY": "",
    }
    assert update.parse_env(None) == {}


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("PORT", "expected KEY=VALUE"),
        ("=81", "malformed variable name ''"),
        ("1PORT=81", "malformed variable name '1PORT'"),
        ("PO RT=81", "malformed variable name 'PO RT'"),
    ],
)
def test_a_bad_env_item_is_one_line(item: str, says: str) -> None:
    with pytest.raises(UserError, match=says) as raised:
        update.parse_env([item])
    assert "\n" not in str(raised.value)


def test_only_our_services_can_be_updated() -> None:
    for name in ("redis", "hasher", "rng", "webui", "worker", "prometheus"):
        assert update.check_service(name) == name
    with pytest.raises(UserError, match="unknown service 'miner': choose from redis"):
        update.check_service("miner")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["update", "miner", "--env", "A=1"], "unknown service 'miner'"),
        (["update", "hasher", "--env", "PORT"], "malformed --env 'PORT'"),
        (["update", "hasher", "--tag", "no good"], "malformed tag 'no good'"),
    ],
)
def test_cli_errors_are_one_line_before_any_daemon_is_asked(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("dockercoins: error: ")
    assert says in err
    assert len(err.strip().splitlines()) == 1


def test_cli_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["update", "worker", "--env", "A=1", "--timeout", "0"])
    assert raised.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_nothing_to_update_and_a_tag_for_redis_are_refused() -> None:
    with pytest.raises(UserError, match="nothing to update"):
        update.update(None, "worker", None, {}, 10)
    with pytest.raises(UserError, match="--tag applies to rng, hasher, worker, webui"):
        update.update(None, "redis", "v2", {}, 10)


# ---------------------------------------------------------------- the new spec


def test_retagged_drops_the_digest_and_keeps_a_registry_port() -> None:
    assert update.retagged(OLD_IMAGE, "v2") == "10.9.0.1:5000/dockercoins/hasher:v2"
    assert update.retagged("10.9.0.1:5000/ns/rng", "v2") == "10.9.0.1:5000/ns/rng:v2"
    assert update.retagged("rng:1@sha256:ab", "broken") == "rng:broken"


def test_with_changes_replaces_a_variable_in_place_and_adds_new_ones() -> None:
    spec = {"TaskTemplate": {"ContainerSpec": {"Image": OLD_IMAGE, "Env": ["A=1", "B=2"]}}}
    new = update.with_changes(spec, "img:v2", {"B": "3", "C": "x=y"})
    assert new["TaskTemplate"]["ContainerSpec"] == {
        "Image": "img:v2",
        "Env": ["A=1", "B=3", "C=x=y"],
    }
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1", "B=2"]  # not modified
    same = update.with_changes(spec, None, {})
    assert same == spec


# ---------------------------------------------------------------- reading the manager


def task(
    task_id: str,
    env: list[str],
    state: str,
    *,
    node: str = "n2",
    desired: str = "running",
    err: str = "",
    exit_code: int = 0,
    at: str = "2026-01-01T00:00:01Z",
) -> dict[str, Any]:
    status: dict[str, Any] = {"Timestamp": at, "State": state, "Message": state}
    if err:
        status["Err"] = err
    if exit_code:
        status["ContainerStatus"] = {"ContainerID": "c" * 64, "ExitCode": exit_code}
    return {
        "ID": task_id,
        "NodeID": node,
        "DesiredState": desired,
        "Status": status,
        "Spec": {"ContainerSpec": {"Image": OLD_IMAGE, "Env": env}},
    }


def service(env: list[str], status: dict[str, str] | None, replicas: int = 1) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "ID": "svc1",
        "Version": {"Index": 9},
        "Spec": {
            "Name": "hasher",
            "TaskTemplate": {"ContainerSpec": {"Image": OLD_IMAGE, "Env": env}},
            "Mode": {"Replicated": {"Replicas": replicas}},
            "UpdateConfig": {"Parallelism": 1, "Monitor": 30_000_000_000},
        },
    }
    if status is not None:
        raw["UpdateStatus"] = status
    return raw


OLD_ENV = ["DOCKERCOINS_NODE={{.Node.Hostname}}"]
NEW_ENV = [*OLD_ENV, "PORT=81"]
NEW_SPEC = service(NEW_ENV, None)["Spec"]
EARLIER = {"State": "completed", "StartedAt": "2025-12-31T00:00:00Z", "Message": "update completed"}


def test_update_status_names_the_task_swarm_blamed() -> None:
    status = update.update_status(
        service(
            OLD_ENV,
            {
                "State": "rollback_started",
                "StartedAt": "2026-01-01T00:00:20Z",
                "Message": ROLLED_BACK,
            },
        )
    )
    assert status.state == update.ROLLBACK_STARTED
    assert status.task_id == BLAMED
    assert update.update_status(service(OLD_ENV, None)) == update.UpdateStatus("", "", "")
    assert update.update_status(service(OLD_ENV, EARLIER)).task_id is None


def test_describe_task_gives_node_state_error_and_exit_code() -> None:
    failed = task(BLAMED, NEW_ENV, "failed", err="task: non-zero exit (3)", exit_code=3)
    assert update.describe_task(failed, NODES) == (
        f"task {BLAMED[:12]} on node2: failed: task: non-zero exit (3)"
    )
    unhealthy = task(BLAMED, NEW_ENV, "failed", node="n3", err="container unhealthy", exit_code=137)
    assert update.describe_task(unhealthy, NODES) == (
        f"task {BLAMED[:12]} on node3: failed: container unhealthy (exit code 137)"
    )
    nowhere = task(BLAMED, NEW_ENV, "rejected", node="", err="No such image: x")
    assert update.describe_task(nowhere, NODES).endswith("on no node: rejected: No such image: x")


def test_failure_reason_prefers_the_blamed_task_then_the_newest_failed_one() -> None:
    old_failure = task("old0000000000000000000000a", OLD_ENV, "failed", err="old error")
    first = task(
        "new0000000000000000000000a", NEW_ENV, "failed", err="first", at="2026-01-01T00:00:05Z"
    )
    second = task(
        "new0000000000000000000000b", NEW_ENV, "failed", err="second", at="2026-01-01T00:00:09Z"
    )
    tasks = [old_failure, first, second]
    assert "first" in update.failure_reason(first["ID"], NEW_SPEC, tasks, NODES)
    assert "second" in update.failure_reason(None, NEW_SPEC, tasks, NODES)
    assert "gone" in update.failure_reason(BLAMED, NEW_SPEC, [old_failure], NODES)
    assert update.failure_reason(None, NEW_SPEC, [old_failure], NODES) == (
        "no task of the new version said why"
    )


def test_progress_counts_running_and_starting_tasks_of_the_new_spec() -> None:
    tasks = [
        task("a" * 25, OLD_ENV, "running"),
        task("b" * 25, NEW_ENV, "running"),
        task("c" * 25, NEW_ENV, "starting"),
        task("d" * 25, NEW_ENV, "failed", err="boom"),
        task("e" * 25, NEW_ENV, "running", node="gone"),  # a node that is not ready
    ]
    status = {"State": "updating", "StartedAt": "2026-01-01T00:00:00Z", "Message": ""}
    raw = service(NEW_ENV, status, replicas=3)
    found = update.progress("hasher", raw, NEW_SPEC, tasks, NODES, ours=True)
    assert (found.updated, found.starting, found.desired, found.state) == (1, 1, 3, "updating")
    assert "1/3 tasks updated, 1 starting" in found.line(30)
    assert update.progress("hasher", raw, NEW_SPEC, tasks, NODES, ours=False).state == ""
    done = update.Progress("hasher", "updating", 3, 3, 0).line(30)
    assert "watches them for 30 s" in done


def test_global_services_want_one_task_per_schedulable_node() -> None:
    raw = service(OLD_ENV, None)
    raw["Spec"]["Mode"] = {"Global": {}}
    drained = Node("n4", "node4", "ready", "drain", "worker", "10.9.0.5")
    assert update.desired_tasks(raw, [*NODES, drained]) == 3


# ---------------------------------------------------------------- follow(), scripted


class Script:
    """A manager that answers each read() with the next recorded step (the last repeats)."""

    def __init__(self, steps: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        self.steps = steps
        self.reads = 0

    def read(self) -> tuple[dict[str, Any], list[dict[str, Any]], list[Node]]:
        raw, tasks = self.steps[min(self.reads, len(self.steps) - 1)]
        self.reads += 1
        return copy.deepcopy(raw), copy.deepcopy(tasks), NODES


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def status(state: str, message: str = "", started: str = "2026-01-01T00:00:00Z") -> dict[str, str]:
    return {"State": state, "StartedAt": started, "Message": message}


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()


def run(script: Script, clock: Clock, timeout: float = 60) -> update.Outcome:
    before = update.update_status(service(OLD_ENV, EARLIER))
    return update.follow(
        script.read, "hasher", before, NEW_SPEC, timeout, sleep=clock.sleep, clock=clock
    )


def test_a_good_update_is_followed_until_completed(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    old = task("a" * 25, OLD_ENV, "running")
    new = task("b" * 25, NEW_ENV, "running")
    script = Script(
        [
            (service(NEW_ENV, EARLIER), [old]),  # the swarm has not started it yet
            (service(NEW_ENV, status("updating")), [old, task("b" * 25, NEW_ENV, "starting")]),
            (service(NEW_ENV, status("updating")), [new]),
            (service(NEW_ENV, status("completed", "update completed")), [new]),
        ]
    )
    assert run(script, clock) == update.Outcome(update.COMPLETED)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "    hasher: waiting for the swarm to start the update, 0/1 tasks updated",
        "    hasher: updating, 0/1 tasks updated, 1 starting (running once healthy)",
        "    hasher: updating, 1/1 tasks updated; the swarm watches them for 30 s before "
        "calling it completed",
        "    hasher: completed, 1/1 tasks updated",
    ]


def test_an_earlier_rollback_is_not_taken_for_this_update(clock: Clock) -> None:
    """The status of an older update (same StartedAt as before) is ignored."""
    stale = service(NEW_ENV, dict(EARLIER, State="rollback_completed"))
    new = task("b" * 25, NEW_ENV, "running")
    script = Script([(stale, []), (stale, []), (service(NEW_ENV, status("completed")), [new])])
    assert run(script, clock).state == update.COMPLETED
    assert script.reads == 3


def test_a_rolled_back_update_ends_with_the_blamed_task_error(clock: Clock) -> None:
    message = ROLLED_BACK
    failed = task(BLAMED, NEW_ENV, "failed", desired="shutdown", err="task: non-zero exit (3)")
    old = task("a" * 25, OLD_ENV, "running")
    script = Script(
        [
            (service(NEW_ENV, status("updating")), [old, task(BLAMED, NEW_ENV, "starting")]),
            (
                service(OLD_ENV, status("rollback_started", message, "2026-01-01T00:00:30Z")),
                [old, failed],
            ),
            # the blamed task's id is gone from the message once the rollback completed
            (service(OLD_ENV, status("rollback_completed", "rollback completed")), [old, failed]),
        ]
    )
    outcome = run(script, clock)
    assert outcome.state == update.ROLLBACK_COMPLETED
    assert outcome.reason == f"task {BLAMED[:12]} on node2: failed: task: non-zero exit (3)"
    error = str(update.outcome_error("hasher", outcome))
    assert error.startswith("rolled back: task ")
    assert "hasher runs its previous version again" in error


def test_a_paused_update_says_how_to_roll_back(clock: Clock) -> None:
    message = f"update paused due to failure or early termination of task {BLAMED}"
    failed = task(BLAMED, NEW_ENV, "failed", err="container unhealthy")
    script = Script([(service(NEW_ENV, status("paused", message)), [failed])])
    outcome = run(script, clock)
    assert outcome.state == update.PAUSED
    assert "docker service update --rollback hasher" in str(update.outcome_error("hasher", outcome))


def test_the_wait_is_bounded(clock: Clock) -> None:
    starting = task("b" * 25, NEW_ENV, "starting")
    script = Script([(service(NEW_ENV, status("updating")), [starting])])
    with pytest.raises(UserError, match=r"did not finish within 5 s \(state: updating, 0/1"):
        run(script, clock, timeout=5)
    assert clock.now <= 6


def test_no_task_to_replace_completes_at_once(clock: Clock) -> None:
    script = Script([(service(NEW_ENV, EARLIER, replicas=0), [])])
    assert run(script, clock).state == update.COMPLETED
    assert script.reads == 1


# ---------------------------------------------------------------- the policies it relies on


def test_deploy_gives_every_service_a_rollback_policy_the_update_follows() -> None:
    modes = Modes("dnsrr", "host")
    images = Images("10.9.0.1:5000", "dockercoins", "latest")
    spec = service_spec("hasher", images, modes, "n")
    assert update.monitor_seconds(spec) == 30.0
    assert spec["UpdateConfig"]["FailureAction"] == "rollback"


# ---------------------------------------------------------------- recorded on the lab

RECORDED = json.loads((Path(__file__).parent / "recorded" / "swarm_updates.json").read_text())


def recorded(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[Node]]:
    found = RECORDED[name]
    nodes = [
        Node(node_id, hostname, "ready", "active", "manager", "")
        for node_id, hostname in found["nodes"].items()
    ]
    return found["service"], found["tasks"], nodes


def spec_of(tasks: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    """A service spec running what the task `task_id` ran (the update's new spec)."""
    [task] = [task for task in tasks if task["ID"] == task_id]
    return {"TaskTemplate": task["Spec"]}


def test_recorded_port_81_rollback_blames_a_task_that_never_became_healthy() -> None:
    """hasher with PORT=81: its task waited for its first healthy check, turned unhealthy,
    and was stopped; dockerd 20.10 then reports it `complete`, exit code 0, no error."""
    raw, tasks, nodes = recorded("HASHER_ROLLBACK_STARTED")
    status = update.update_status(raw)
    assert status.state == update.ROLLBACK_STARTED
    assert status.task_id == "t7uz72bo9175ee1n5x96dykk3"
    new_spec = spec_of(tasks, status.task_id)
    assert "PORT=81" in new_spec["TaskTemplate"]["ContainerSpec"]["Env"]
    never_ran = update.failure_reason(status.task_id, new_spec, tasks, nodes, ran=set())
    assert never_ran == (
        "task t7uz72bo9175 on node1 never became healthy (it ended complete, exit code 0)"
    )
    seen_running = update.failure_reason(status.task_id, new_spec, tasks, nodes)
    assert seen_running == "task t7uz72bo9175 on node1: complete: finished"
    # once the message names no task: the new version's task that ended before it was healthy
    assert update.failure_reason(None, new_spec, tasks, nodes, ran=set()) == never_ran
    assert update.failure_reason(None, new_spec, tasks, nodes, ran={status.task_id}) == (
        "no task of the new version said why"
    )
    # the old task kept running the whole time (start-first)
    progress = update.progress("hasher", raw, new_spec, tasks, nodes, ours=True)
    assert (progress.updated, progress.desired) == (0, 1)


def test_recorded_exit_at_start_names_the_exit_status() -> None:
    raw, tasks, nodes = recorded("WORKER_EXITS")
    status = update.update_status(raw)
    assert status.state == update.ROLLBACK_COMPLETED
    assert status.task_id is None  # "rollback completed" names no task: the newest failed one
    new_spec = spec_of(tasks, "fd1mraiuoyny3jdzjpewmzz25")
    assert ":broken@" in new_spec["TaskTemplate"]["ContainerSpec"]["Image"]
    reason = update.failure_reason(None, new_spec, tasks, nodes, ran=set())
    assert reason == "task u9wsvq40ynsx on node2: failed: task: non-zero exit (3)"
    error = str(update.outcome_error("worker", update.Outcome(status.state, reason)))
    assert error == (
        "rolled back: task u9wsvq40ynsx on node2: failed: task: non-zero exit (3); "
        "worker runs its previous version again"
    )


def test_a_task_log_line_is_found_by_its_details() -> None:
    mine = "q2x5y8z1a4b7c0d3e6f9g2h5j"
    line = (
        b"com.docker.swarm.node.id=lr0qyb82ty5bavtjik8oazwlx,com.docker.swarm.service.id="
        b"qvm4ptxyn05kolx47sejatp2q,com.docker.swarm.task.id=" + mine.encode() + b" "
        b"2026-11-27 18:49:27,101 INFO hasher: hasher starting on 0.0.0.0:81: delay 0.100 s\n"
    )
    assert update.task_line(line, mine) == (
        "2026-11-27 18:49:27,101 INFO hasher: hasher starting on 0.0.0.0:81: delay 0.100 s"
    )
    assert update.task_line(line, "another0000000000000000000") is None
    assert update.task_line(b"no details at all\n", mine) is None


def test_the_help_states_the_watch_deploy_sets(capsys: pytest.CaptureFixture[str]) -> None:
    from dockercoins.swarm.specs import UPDATE_MONITOR

    with pytest.raises(SystemExit):
        cli.main(["update", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"after the swarm's {UPDATE_MONITOR} s watch of the new tasks" in text
    assert "rolled back: " in text
