"""The lab's pieces that need no lab: names and addresses, the TCP forwarder (real sockets,
a real detached process), process, dockerd and mount helpers, and the CLI's errors."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from dockercoins import cli
from dockercoins.errors import UserError
from dockercoins.host import cgroups, dockerd, mounts, ports, processes
from dockercoins.lab import forward as labforward
from dockercoins.lab import forwarder, nodes
from dockercoins.lab import network as labnet
from dockercoins.lab.state import LabState

from tests.support.servers import free_port, wait_for

LOOPBACK = "127.0.0.1"


# --- names and addresses -----------------------------------------------------------


def test_node_names_and_addresses() -> None:
    assert [labnet.node_name(i) for i in (1, 2, 3)] == ["node1", "node2", "node3"]
    assert [labnet.node_ip(i) for i in (1, 2, 3)] == [
        "10.213.47.11",
        "10.213.47.12",
        "10.213.47.13",
    ]
    assert labnet.node_index("node7") == 7
    with pytest.raises(ValueError):
        labnet.node_index("dcbr0")


def test_lab_subnet_stays_out_of_docker_default_pools() -> None:
    lab = ipaddress.ip_network(f"{labnet.HOST_IP}/{labnet.PREFIX_LEN}", strict=False)
    for pool in ("172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/16"):
        assert not lab.overlaps(ipaddress.ip_network(pool))
    node_ips = {labnet.node_ip(i) for i in range(1, labnet.MAX_NODES + 1)}
    assert all(ipaddress.ip_address(ip) in lab for ip in node_ips)
    assert labnet.HOST_IP not in node_ips


# --- the forwarder -----------------------------------------------------------------


def test_parse_address() -> None:
    assert ports.parse_address("10.213.47.11:8000") == ("10.213.47.11", 8000)
    for bad in ("8000", ":8000", "host:", "host:0", "host:70000", "host:http"):
        with pytest.raises(ValueError):
            ports.parse_address(bad)


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"echo:" + self.rfile.read())


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A real TCP echo server on loopback: answers `echo:` + everything it read."""
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def _through(listen_port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(LOOPBACK, listen_port)
    writer.write(payload)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_forwarder_skips_targets_that_refuse(echo_port: int) -> None:
    refusing = free_port()  # nothing listens there

    async def scenario() -> tuple[bytes, bytes, int]:
        relay = forwarder.Forwarder([(LOOPBACK, refusing), (LOOPBACK, echo_port)])
        server = await asyncio.start_server(relay.handle, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            first = await _through(port, b"hello")
            second = await _through(port, b"x" * 200_000)
        return first, second, relay.preferred

    first, second, preferred = asyncio.run(scenario())
    assert first == b"echo:hello"
    assert second == b"echo:" + b"x" * 200_000
    assert preferred == 1  # the target that worked is tried first next time


def test_forwarder_closes_when_no_target_accepts() -> None:
    async def scenario() -> bytes:
        relay = forwarder.Forwarder([(LOOPBACK, free_port())])
        server = await asyncio.start_server(relay.handle, LOOPBACK, 0)
        async with server:
            return await _through(server.sockets[0].getsockname()[1], b"anyone?")

    assert asyncio.run(scenario()) == b""


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKERCOINS_STATE", str(tmp_path))
    return tmp_path


def test_forwarder_process_starts_forwards_and_stops(state_dir: Path, echo_port: int) -> None:
    port = free_port()
    targets = [f"{LOOPBACK}:{free_port()}", f"{LOOPBACK}:{echo_port}"]
    try:
        assert labforward.start(port, targets)
        pid = labforward.running_pid()
        assert pid is not None
        assert asyncio.run(_through(port, b"via process")) == b"echo:via process"
        assert labforward.start(port, targets)  # same port and targets: kept as it is
        assert labforward.running_pid() == pid
        assert labforward.start(port, targets[1:])  # other targets: started again
        assert labforward.running_pid() not in (None, pid)
        assert asyncio.run(_through(port, b"again")) == b"echo:again"
    finally:
        labforward.stop()
    assert labforward.running_pid() is None
    wait_for(lambda: not processes.is_alive(pid), timeout=10)


def test_two_forwarders_run_side_by_side_and_stop_together(state_dir: Path, echo_port: int) -> None:
    # the web UI's and Prometheus's: one process each, each with its own pidfile
    web_port, prometheus_port = free_port(), free_port()
    targets = [f"{LOOPBACK}:{echo_port}"]
    try:
        assert labforward.start(web_port, targets)
        assert labforward.start(prometheus_port, targets, forward=labforward.PROMETHEUS)
        web_pid = labforward.running_pid(labforward.WEBUI)
        prometheus_pid = labforward.running_pid(labforward.PROMETHEUS)
        assert None not in (web_pid, prometheus_pid)
        assert web_pid != prometheus_pid
        assert labforward.running_pid() == web_pid  # the web UI's is the default
        assert labforward.pidfile(labforward.WEBUI) == state_dir / "lab" / "forwarder.pid"
        assert labforward.pidfile(labforward.PROMETHEUS) == (
            state_dir / "lab" / "forwarder-prometheus.pid"
        )
        assert asyncio.run(_through(web_port, b"web")) == b"echo:web"
        assert asyncio.run(_through(prometheus_port, b"prom")) == b"echo:prom"
        # starting one again with the same port and targets keeps both as they are
        assert labforward.start(prometheus_port, targets, forward=labforward.PROMETHEUS)
        assert labforward.running_pid(labforward.PROMETHEUS) == prometheus_pid
        assert labforward.running_pid(labforward.WEBUI) == web_pid
    finally:
        labforward.stop_all()
    assert labforward.running_pid(labforward.WEBUI) is None
    assert labforward.running_pid(labforward.PROMETHEUS) is None
    assert not (state_dir / "lab" / "forwarder.pid").exists()
    assert not (state_dir / "lab" / "forwarder-prometheus.pid").exists()
    for pid in (web_pid, prometheus_pid):
        assert pid is not None
        wait_for(lambda pid=pid: not processes.is_alive(pid), timeout=10)


@contextmanager
def _taken_port() -> Iterator[int]:
    """A loopback port taken (bound and listening) for the duration of the block."""
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_prometheus_forwarder_port_taken_names_its_option(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _taken_port() as port:
        assert not labforward.start(
            port, [f"{LOOPBACK}:{free_port()}"], forward=labforward.PROMETHEUS
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"warning: 127.0.0.1:{port} is already taken by another program: the Prometheus "
        "forwarder is not started (choose another port with --prometheus-port)"
    ]
    assert labforward.running_pid(labforward.PROMETHEUS) is None


def test_forwarder_port_taken_is_one_warning(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _taken_port() as port:
        assert not labforward.start(port, [f"{LOOPBACK}:{free_port()}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"warning: 127.0.0.1:{port} is already taken")
    assert labforward.running_pid() is None


# --- processes and mounts ----------------------------------------------------------


def test_processes_stop_and_zombies_count_as_dead(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    pidfile = tmp_path / "sleep.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    assert processes.pidfile_process(pidfile, "sleep") == sleeper.pid
    assert processes.pidfile_process(pidfile, "dockerd") is None  # not what we expect: leave it
    processes.stop([sleeper.pid], timeout=5)
    assert not processes.is_alive(sleeper.pid)
    quick = subprocess.Popen(["true"])
    wait_for(lambda: not processes.is_alive(quick.pid), timeout=10)  # exited, not reaped
    assert processes.read_pidfile(tmp_path / "missing.pid") is None


def test_log_tail_prefers_the_last_error_line(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    assert processes.log_tail(log) == ""  # no log
    log.write_text('level=info msg="a"\nlevel=error msg="broken"\nlevel=info msg="b"\n')
    assert processes.log_tail(log) == 'level=error msg="broken"'
    log.write_text("first\nlast\n")
    assert processes.log_tail(log) == "last"


def test_wait_ready_returns_once_ready(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        processes.wait_ready(sleeper, lambda: True, timeout=5, what="sleep")
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_wait_ready_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    log = tmp_path / "quits.log"
    proc = processes.spawn_detached(["sh", "-c", "echo cannot bind; exit 3"], log)
    with pytest.raises(UserError) as raised:
        processes.wait_ready(proc, lambda: False, timeout=10, what="quitter", log=log)
    assert str(raised.value) == (
        f"quitter exited with code 3 while starting: cannot bind (log: {log})"
    )


def test_wait_ready_stops_a_process_that_never_gets_ready() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    with pytest.raises(UserError) as raised:
        processes.wait_ready(sleeper, lambda: False, timeout=0.3, what="sleeper")
    assert str(raised.value) == "sleeper did not answer within 0.3 s"
    assert sleeper.poll() is not None


def test_dockerd_command_keeps_its_folders_and_adds_prefix_and_args(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dockerd, "dockerd_binary", lambda: "/usr/bin/dockerd")
    daemon = dockerd.Dockerd(root=tmp_path / "node1", exec_root=tmp_path / "node1" / "exec")
    assert daemon.docker_host == f"unix://{tmp_path}/node1/docker.sock"
    assert dockerd.command(daemon, ["--bridge=none"], ["nsenter", "--net=x"]) == [
        "nsenter",
        "--net=x",
        "/usr/bin/dockerd",
        "--data-root",
        f"{tmp_path}/node1/data",
        "--exec-root",
        f"{tmp_path}/node1/exec",
        "--pidfile",
        f"{tmp_path}/node1/dockerd.pid",
        "-H",
        f"unix://{tmp_path}/node1/docker.sock",
        "--bridge=none",
    ]
    assert daemon.pid() is None
    assert not daemon.answers()


def test_lab_node_daemons_keep_their_folders(state_dir: Path) -> None:
    node = nodes.daemon(2)
    assert node.root == state_dir / "lab" / "node2"
    assert node.exec_root == state_dir / "lab" / "node2" / "exec"
    assert node.socket == state_dir / "lab" / "node2" / "docker.sock"


def test_mounts_helpers(tmp_path: Path) -> None:
    assert mounts._unescape(r"/a\040b/c\011d") == "/a b/c\td"
    assert mounts.mounts_under(tmp_path) == []
    assert mounts.unmount_all_under(tmp_path / "missing") == []
    assert "/proc" in mounts.mounts_under(Path("/proc"))


# --- the CLI's errors ----------------------------------------------------------------


def test_lab_bad_node_count_is_a_usage_error(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("0", str(labnet.MAX_NODES + 1), "x"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["lab", "up", "--nodes", bad])
        assert exit_info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("dockercoins lab up: error: argument --nodes: ")
        assert f"expected 1 to {labnet.MAX_NODES}" in last or "invalid int value" in last


def test_lab_bad_forward_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lab", "up", "--forward-port", "70000"])
    assert exit_info.value.code == 2
    assert "argument --forward-port: not a TCP port (1-65535): '70000'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lab", "up", "--prometheus-port", "0"])
    assert exit_info.value.code == 2
    assert "argument --prometheus-port: not a TCP port (1-65535): '0'" in capsys.readouterr().err


def test_lab_state_records_the_prometheus_port(state_dir: Path) -> None:
    from dockercoins.lab import state as lab_state

    node = lab_state.LabNode("node1", "10.213.47.2", "/run/node1.sock")
    recorded = lab_state.LabState((node,), "br", "10.213.47.1", "10.213.47.1:5000", 8001, 9091)
    lab_state.save(recorded)
    assert lab_state.load() == recorded
    # a record from before the Prometheus forwarder: the default port
    older = lab_state.state_file().read_text().replace('"prometheus_port": 9091', '"x": 0')
    lab_state.state_file().write_text(older)
    loaded = lab_state.load()
    assert loaded is not None
    assert loaded.prometheus_port == 9090
    assert loaded.forward_port == 8001


def test_dockerd_env_without_our_daemon(
    state_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dockerd, "on_host", lambda: dockerd.Dockerd(state_dir, state_dir / "x"))
    assert cli.main(["dockerd", "env"]) == 1
    assert capsys.readouterr().err.strip() == (
        "dockercoins: error: our dockerd is not running: dockercoins dockerd start"
    )


def test_lab_status_without_a_lab(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lab", "status"]) == 1
    assert "no lab is up" in capsys.readouterr().err


def test_lab_needs_root(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    # as root, drop to nobody for the command; as another user, run it as that user
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), sys.executable, "-m", "dockercoins", "lab", "up"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKERCOINS_STATE": str(tmp_path), "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "dockercoins: error: the lab needs root (network namespaces, bridges, dockerd): run as root"
    ]


def test_lab_help_on_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["lab"], ["lab", "up"], ["lab", "status"], ["lab", "down"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*command, "--help"])
        assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "--purge" in shown
    assert "--forward-port" in shown
    assert "--prometheus-port" in shown
    assert "--nodes" in shown


# --- cgroups: a node's processes, found, frozen, killed and removed ----------------------


V1_CONTROLLERS = ("cpu", "pids", "freezer", "name=systemd")


def _fake_mountinfo(tmp_path: Path, layout: str) -> Path:
    """A mountinfo whose cgroup hierarchies are folders in tmp_path (v1: one per controller,
    v2: one unified), with a proc mount and a duplicate mount that must be ignored."""
    lines = ["20 1 0:5 / /proc rw,nosuid - proc proc rw"]
    if layout == "v1":
        for number, controller in enumerate(V1_CONTROLLERS):
            point = tmp_path / "cg" / controller.removeprefix("name=")
            lines.append(
                f"{30 + number} 25 0:{40 + number} / {point} rw,relatime - cgroup cgroup "
                f"rw,{controller}"
            )
        lines.append(f"50 25 0:41 / {tmp_path}/elsewhere rw - cgroup cgroup rw,pids")
    else:
        lines.append(f"30 25 0:40 / {tmp_path}/cg/unified rw - cgroup2 cgroup2 rw,nsdelegate")
        lines.append(f"50 25 0:40 / {tmp_path}/elsewhere rw - cgroup2 cgroup2 rw,nsdelegate")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("\n".join(lines) + "\n")
    return mountinfo


def _fake_cgroup(hierarchy: cgroups.Hierarchy, cgroup: str, pids: list[int]) -> Path:
    """A cgroup folder as the kernel shows it: cgroup.procs, and the freezer's files."""
    folder = hierarchy.folder(cgroup)
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in pids))
    if hierarchy.version == 2:
        (folder / "cgroup.freeze").write_text("0\n")
        (folder / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    elif "freezer" in hierarchy.controllers:
        (folder / "freezer.state").write_text("THAWED\n")
    return folder


def test_cgroup_hierarchies_from_mountinfo(tmp_path: Path) -> None:
    v1 = cgroups.hierarchies(_fake_mountinfo(tmp_path, "v1"))
    assert [(h.mountpoint.name, h.version, h.root) for h in v1] == [
        ("cpu", 1, "/"),
        ("pids", 1, "/"),
        ("freezer", 1, "/"),
        ("systemd", 1, "/"),
    ]
    assert v1[3].controllers == frozenset({"name=systemd"})
    v2 = cgroups.hierarchies(_fake_mountinfo(tmp_path, "v2"))
    assert [(h.mountpoint, h.version) for h in v2] == [(tmp_path / "cg" / "unified", 2)]
    assert v2[0].folder("/dockercoins-lab/node2") == tmp_path / "cg/unified/dockercoins-lab/node2"
    assert v2[0].folder("/") == tmp_path / "cg" / "unified"
    # a hierarchy mounted from a cgroup below the root (a cgroup namespace, a bind mount)
    inner = cgroups.Hierarchy(tmp_path, "/outer", 2, frozenset())
    assert inner.folder("/outer/a") == tmp_path / "a"
    assert inner.folder("/other/a") is None
    assert cgroups.hierarchies()  # this machine's own, whatever its layout


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_cgroup_pids_under_a_parent_recursively(tmp_path: Path, layout: str) -> None:
    found = cgroups.hierarchies(_fake_mountinfo(tmp_path, layout))
    first, last = found[0], found[-1]
    _fake_cgroup(first, "/dockercoins-lab/node2", [])
    _fake_cgroup(first, "/dockercoins-lab/node2/aaa", [101, 102])
    if last is not first:  # v1: the same cgroup in another hierarchy
        _fake_cgroup(last, "/dockercoins-lab/node2/aaa", [102, 103])
    _fake_cgroup(last, "/dockercoins-lab/node2/bbb/inner", [104])
    _fake_cgroup(first, "/dockercoins-lab/node3/ccc", [201])
    _fake_cgroup(first, "/docker/ddd", [301])
    expected = [101, 102, 103, 104] if layout == "v1" else [101, 102, 104]
    assert cgroups.pids_under("/dockercoins-lab/node2", found) == expected
    assert cgroups.pids_under("/dockercoins-lab", found) == [*expected, 201]
    assert cgroups.pids_under("/dockercoins-lab/node9", found) == []
    assert cgroups.children("/dockercoins-lab", found) == ["node2", "node3"]
    assert cgroups.children("/dockercoins-lab/node2", found) == ["aaa", "bbb"]


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_cgroup_kill_all_freezes_kills_and_thaws(tmp_path: Path, layout: str) -> None:
    found = cgroups.hierarchies(_fake_mountinfo(tmp_path, layout))
    freezer = next(h for h in found if h.version == 2 or "freezer" in h.controllers)
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(4)]
    try:
        inside, daemon, outside = sleepers[:2], sleepers[2], sleepers[3]
        top = _fake_cgroup(freezer, "/dockercoins-lab/node2", [])
        _fake_cgroup(freezer, "/dockercoins-lab/node2/aaa", [p.pid for p in inside])
        _fake_cgroup(freezer, "/dockercoins-lab/node3/bbb", [outside.pid])
        control = top / ("freezer.state" if layout == "v1" else "cgroup.freeze")
        with cgroups.frozen("/dockercoins-lab/node2", found) as took:
            assert took
            assert control.read_text() == ("FROZEN" if layout == "v1" else "1")
        assert control.read_text() == ("THAWED" if layout == "v1" else "0")
        assert cgroups.kill_all("/dockercoins-lab/node2", also=[daemon.pid], found=found) == []
        assert all(not processes.is_alive(p.pid) for p in [*inside, daemon])
        assert processes.is_alive(outside.pid)  # another node's cgroup is never touched
        assert control.read_text() == ("THAWED" if layout == "v1" else "0")
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


def test_cgroup_kill_all_without_a_freezer_and_without_the_cgroup(tmp_path: Path) -> None:
    found = [h for h in cgroups.hierarchies(_fake_mountinfo(tmp_path, "v1")) if h.version == 1]
    pids_only = [h for h in found if "pids" in h.controllers]
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        _fake_cgroup(pids_only[0], "/dockercoins-lab/node1/aaa", [sleeper.pid])
        with cgroups.frozen("/dockercoins-lab/node1", pids_only) as took:
            assert not took
        assert cgroups.kill_all("/dockercoins-lab/node1", found=pids_only) == []
        assert not processes.is_alive(sleeper.pid)
        assert cgroups.kill_all("/dockercoins-lab/node7", found=found) == []
        assert cgroups.remove("/dockercoins-lab/node7", found) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def _mounted_layouts() -> list[str]:
    """The cgroup layouts this machine mounts ("v1", "v2", both on a hybrid host); "none"
    when it mounts none, a case that fails: the lab cannot work without cgroups."""
    versions = {hierarchy.version for hierarchy in cgroups.hierarchies()}
    return [name for name, version in (("v1", 1), ("v2", 2)) if version in versions] or ["none"]


def _real_hierarchies(layout: str) -> list[cgroups.Hierarchy]:
    """This machine's hierarchies of `layout` that a test may create cgroups in (v1: pids
    and freezer, which need no setup; v2: the unified one)."""
    if layout == "none":
        pytest.fail("no cgroup hierarchy is mounted here (the lab needs cgroups)")
    if os.geteuid() != 0:
        pytest.fail("creating cgroups needs root: run the fast tier as root")
    if layout == "v1":
        usable = [h for h in cgroups.hierarchies() if h.controllers & {"pids", "freezer"}]
    else:
        usable = [h for h in cgroups.hierarchies() if h.version == 2]
    usable = [h for h in usable if os.access(h.mountpoint, os.W_OK)]
    if not usable:
        pytest.fail(f"cgroup {layout} is mounted but no usable hierarchy of it is writable")
    return usable


@pytest.mark.parametrize("layout", _mounted_layouts())
def test_cgroup_kill_all_and_remove_in_real_cgroups(layout: str) -> None:
    found = _real_hierarchies(layout)
    parent = f"/dockercoins-test-{uuid.uuid4().hex[:12]}"
    # shells that keep forking and ignore SIGTERM: only a frozen SIGKILL stops them all
    script = "trap '' TERM; while :; do sleep 0.05; done"
    started: list[subprocess.Popen[bytes]] = []
    try:
        for hierarchy in found:
            folder = hierarchy.folder(parent)
            assert folder is not None
            try:
                (folder / "node2" / "ccc").mkdir(parents=True)
            except OSError as error:
                pytest.fail(f"cannot create a cgroup in {hierarchy.mountpoint}: {error}")
        for number in range(3):
            shell = subprocess.Popen(["sh", "-c", script])
            started.append(shell)
            child = "node2/ccc" if number else "node2"
            for hierarchy in found:
                folder = hierarchy.folder(f"{parent}/{child}")
                assert folder is not None
                (folder / "cgroup.procs").write_text(str(shell.pid))
        wait_for(lambda: len(cgroups.pids_under(parent, found)) >= 6, timeout=10)
        assert {p.pid for p in started} <= set(cgroups.pids_under(f"{parent}/node2", found))
        assert cgroups.children(parent, found) == ["node2"]
        assert cgroups.remove(parent, found)  # busy: nothing removed while processes run
        assert cgroups.kill_all(parent, found=found, timeout=10) == []
        assert all(not processes.is_alive(p.pid) for p in started)
        assert cgroups.pids_under(parent, found) == []
        assert cgroups.remove(parent, found) == []
        assert cgroups.folders(parent, found) == []
    finally:
        for shell in started:
            shell.kill()
            shell.wait()
        cgroups.kill_all(parent, found=found, timeout=5)
        cgroups.remove(parent, found)


# --- the nodes' dockerd and `lab node` ---------------------------------------------------


def test_lab_node_dockerd_puts_its_containers_under_its_cgroup(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dockerd, "dockerd_binary", lambda: "/usr/bin/dockerd")
    assert nodes.cgroup(2) == "/dockercoins-lab/node2"
    command = nodes.dockerd_command(2)
    assert command[:3] == ["/usr/bin/dockerd", "--data-root", f"{state_dir}/lab/node2/data"]
    assert command[-4:] == [
        "--exec-opt",
        "native.cgroupdriver=cgroupfs",
        "--cgroup-parent",
        "/dockercoins-lab/node2",
    ]
    # the registry is trusted through its CA (/etc/docker/certs.d), never as insecure
    assert not any(arg.startswith("--insecure-registr") for arg in command)
    assert "--no-new-privileges" in command  # every container of the node: no_new_privs
    assert not nodes.runs_current_command(2)  # no daemon here


def test_lab_node_commands_parse() -> None:
    parser = cli.build_parser()
    for action in ("kill", "stop", "start"):
        args = parser.parse_args(["lab", "node", action, "node2"])
        assert (args.lab_command, args.node_action, args.node) == ("node", action, "node2")
        assert callable(args.func)


def test_lab_node_bad_name_is_one_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("node0", f"node{labnet.MAX_NODES + 1}", "2", "nodeX", "dcbr0"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["lab", "node", "kill", bad])
        assert exit_info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last == (
            f"dockercoins lab node kill: error: argument NODE: not a lab node: {bad!r} "
            f"(node1 to node{labnet.MAX_NODES})"
        )


def test_lab_node_outside_the_lab_is_one_line(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dockercoins.lab import state as lab_state

    assert cli.main(["lab", "node", "stop", "node2"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "dockercoins: error: no lab is up: bring one up with `dockercoins lab up`"
    ]
    members = tuple(
        lab_state.LabNode(f"node{i}", labnet.node_ip(i), f"/run/node{i}.sock") for i in (1, 2, 3)
    )
    lab_state.save(lab_state.LabState(members, "dcbr0", labnet.HOST_IP, labnet.REGISTRY_ADDRESS))
    for action in ("kill", "stop", "start"):
        assert cli.main(["lab", "node", action, "node5"]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            "dockercoins: error: node5 is not a node of the lab (node1, node2, node3)"
        ]


def test_lab_node_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["lab", "node"], ["lab", "node", "kill"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*command, "--help"])
        assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "power loss" in shown
    assert "NODE" in shown


# --- the host-wide lab lock --------------------------------------------------------

HOLD_LOCK = """
import sys
from pathlib import Path
from dockercoins.lab import lifecycle
lifecycle.LOCK_FILE = Path(sys.argv[1])
with lifecycle.locked():
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_a_second_lab_command_waits_for_the_lock_then_says_who_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dockercoins.lab import lifecycle

    lock = tmp_path / "run" / "dockercoins-lab.lock"
    monkeypatch.setattr(lifecycle, "LOCK_FILE", lock)
    monkeypatch.setattr(lifecycle, "LOCK_WAIT", 1.0)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(UserError) as refused, lifecycle.locked():
            raise AssertionError("the lock was taken twice")
        assert str(refused.value) == (
            f"another `dockercoins lab` command (pid {holder.pid}) still holds the lab lock "
            f"{lock} after 1 s"
        )
        waiting = capsys.readouterr().err.strip().splitlines()
        assert waiting == [
            f"another `dockercoins lab` command (pid {holder.pid}) holds the lab lock {lock}: "
            "waiting for it (at most 1 s)"
        ]
    finally:
        holder.communicate(timeout=10)  # closes its stdin: it lets go and exits
    assert holder.returncode == 0
    with lifecycle.locked():  # free again: taken at once, and the file names us
        assert lock.read_text() == f"{os.getpid()}\n"


# --- managers: how many, and which one the tool talks to ------------------------------


def test_default_managers_and_their_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    from dockercoins.lab import cluster

    assert [cluster.default_managers(n) for n in (1, 2, 3, 4, 9)] == [1, 2, 3, 3, 3]
    assert cli.main(["lab", "up", "--nodes", "3", "--managers", "4"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "dockercoins: error: --managers 4: a lab of 3 nodes has 1 to 3 managers"
    ]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lab", "up", "--managers", "0"])
    assert exit_info.value.code == 2
    assert "argument --managers: bad value 0: expected 1 to" in capsys.readouterr().err


def test_lab_up_passes_the_managers_and_warns_of_an_even_count(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dockercoins.lab import lifecycle
    from dockercoins.lab import state as lab_state

    asked: list[tuple[int, int | None]] = []

    def fake_up(count: int, forward: int, prometheus: int, managers: int | None) -> object:
        asked.append((count, managers))
        members = tuple(
            lab_state.LabNode(f"node{i}", labnet.node_ip(i), str(state_dir / f"node{i}.sock"))
            for i in range(1, count + 1)
        )
        names = tuple(f"node{i}" for i in range(1, (managers or 1) + 1))
        return lab_state.LabState(members, "dcbr0", labnet.HOST_IP, "r:5000", managers=names)

    monkeypatch.setattr(lifecycle, "up", fake_up)
    assert cli.main(["lab", "up", "--nodes", "5"]) == 0
    assert cli.main(["lab", "up", "--nodes", "2"]) == 0  # every node, and no warning
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["lab", "up", "--nodes", "5", "--managers", "4"]) == 0
    captured = capsys.readouterr()
    assert asked == [(5, 3), (2, 2), (5, 4)]
    assert captured.err.splitlines()[0] == (
        "warning: 4 managers survive the loss of 1, as 3 would: raft needs a majority (3 of 4)"
    )
    assert "lab up: 5 nodes (4 managers)" in captured.err
    # no node answers here: the first recorded manager is printed
    assert f"export DOCKER_HOST=unix://{state_dir}/node1.sock" in captured.out.splitlines()


class _FakeDockerd:
    """A Docker Engine API on a unix socket, as much of it as the manager probe asks:
    `kind` is "leader" or "reachable" (a manager of a swarm with a leader), "no-leader" (a
    manager whose swarm lost its majority) or "worker"."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, body = fake.answer(self.path.split("?", 1)[0])
                data = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _UnixServer(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, path: str) -> tuple[int, object]:
        route = path.removeprefix("/v1.41")
        manager = self.kind != "worker"
        if route == "/_ping":
            return 200, "OK"
        if route == "/version":
            return 200, {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.24"}
        if route == "/info":
            swarm = {"LocalNodeState": "active", "ControlAvailable": manager, "NodeID": "n1"}
            return 200, {"Name": self.path.stem, "Swarm": swarm}
        if route == "/nodes/n1" and self.kind == "no-leader":
            return 503, {"message": "rpc error: The swarm does not have a leader."}
        if route == "/nodes/n1" and manager:
            status = {"Leader": self.kind == "leader", "Reachability": "reachable"}
            return 200, {"ID": "n1", "ManagerStatus": status}
        return 404, {"message": f"no route {path}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def _fake_lab(state_dir: Path, kinds: dict[str, str | None]) -> Iterator[LabState]:
    """A recorded lab of the nodes in `kinds`, the first three its managers; a fake dockerd
    of each kind on the node's socket (None: no daemon, the socket file is absent)."""
    from dockercoins.lab import state as lab_state

    daemons = []
    members = []
    for name, kind in kinds.items():
        socket_path = state_dir / f"{name}.sock"
        if kind is not None:
            daemons.append(_FakeDockerd(socket_path, kind))
        members.append(lab_state.LabNode(name, "10.213.47.9", str(socket_path)))
    state = lab_state.LabState(
        tuple(members), "dcbr0", labnet.HOST_IP, "r:5000", managers=tuple(kinds)[:3]
    )
    lab_state.save(state)
    try:
        yield state
    finally:
        for daemon in daemons:
            daemon.close()


def test_the_lab_manager_is_the_first_that_answers_as_a_reachable_manager(
    state_dir: Path,
) -> None:
    from dockercoins.lab import state as lab_state

    kinds = {"node1": None, "node2": "no-leader", "node3": "reachable", "node4": "leader"}
    with _fake_lab(state_dir, kinds) as recorded:
        loaded = lab_state.load()
        assert loaded is not None and loaded == recorded
        assert [node.name for node in loaded.manager_nodes] == ["node1", "node2", "node3"]
        # node1 is down, node2 has no leader: node3 (a manager), not node4 (not recorded one)
        assert loaded.manager.name == "node3"
    kinds = {"node1": "worker", "node2": None, "node3": None, "node4": "leader"}
    with _fake_lab(state_dir, kinds) as recorded:
        assert recorded.manager.name == "node4"  # promoted by hand: found after the managers
    with _fake_lab(state_dir, {"node1": None, "node2": "worker"}) as recorded:
        assert recorded.manager.name == "node1"  # none answers: the first recorded manager


def test_a_record_from_before_the_managers_names_node1(state_dir: Path) -> None:
    from dockercoins.lab import state as lab_state

    with _fake_lab(state_dir, {"node1": "leader", "node2": "leader"}):
        data = json.loads(lab_state.state_file().read_text())
        del data["managers"]
        lab_state.state_file().write_text(json.dumps(data))
        loaded = lab_state.load()
        assert loaded is not None
        assert loaded.managers == ()
        assert [node.name for node in loaded.manager_nodes] == ["node1"]
        assert loaded.manager.name == "node1"


def test_swarm_commands_reach_the_lab_s_first_live_manager(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dockercoins.swarm import connect

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    kinds = {"node1": None, "node2": "worker", "node3": "reachable"}
    with _fake_lab(state_dir, kinds):
        base_url, where = connect.manager_url()
        assert base_url == f"unix://{state_dir}/node3.sock"
        assert where == f"unix://{state_dir}/node3.sock (the lab's manager node3)"
        client = connect.connect_manager()
        try:
            assert client.info()["Name"] == "node3"
        finally:
            client.close()


def test_a_node_s_role_counts_once_the_swarm_runs_it() -> None:
    from types import SimpleNamespace

    from dockercoins.lab import cluster

    def node(role: str, manager_status: dict[str, object] | None) -> object:
        attrs: dict[str, object] = {"Spec": {"Role": role}}
        if manager_status is not None:
            attrs["ManagerStatus"] = manager_status
        return SimpleNamespace(attrs=attrs)

    assert cluster._role(node("manager", {"Reachability": "reachable"})) == "manager"
    assert cluster._role(node("worker", None)) == "worker"
    # promoted, not yet in raft; demoted, still in raft; a manager that is down
    assert cluster._role(node("manager", None)) == "manager (changing)"
    assert cluster._role(node("worker", {"Reachability": "reachable"})) == "worker (changing)"
    assert cluster._role(node("manager", {"Reachability": "unreachable"})) == ("manager (changing)")
