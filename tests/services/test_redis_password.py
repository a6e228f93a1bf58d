"""Redis behind a password: the redis image's start script (run here on the host against the
real redis-server) and its health check, and the worker and webui reading the password from
REDIS_PASSWORD_FILE. The password is never on a command line, in an environment, a log line,
/json, /ledger or /metrics."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from dockercoins.images.kinds import REDIS_FILES_DIR, REDIS_PING, REDIS_START
from dockercoins.local import redis_server_command

from tests.support.servers import LOOPBACK, ServiceProcess, free_port, stop_process, wait_for

StartService = Callable[..., ServiceProcess]
START = REDIS_FILES_DIR / REDIS_START
PING = REDIS_FILES_DIR / REDIS_PING


def write_secret(path: Path, text: str) -> Path:
    """A secret file as swarm mounts one: mode 0600 (here: 0400 is not needed, root reads)."""
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class SecretRedis:
    """redis-server started by the image's start script, with REDIS_PASSWORD_FILE."""

    port: int
    password: str
    password_file: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self, password: str | None = None) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, password=password, socket_timeout=5)

    def authed(self) -> redis.Redis:
        return self.client(self.password)


def raw_command(port: int, command: bytes) -> bytes:
    """One inline command on a fresh connection; the first line of the reply."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as conn:
        conn.sendall(command + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


def start_script(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(START), *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def redis_args(port: int, workdir: Path) -> list[str]:
    """The host's redis-server options on loopback, as `redis-server ARGS` (the script drops
    the leading `redis-server`, as the image's CMD has it)."""
    return redis_server_command("redis-server", port, workdir)


@pytest.fixture
def secret_redis(tmp_path: Path) -> Iterator[SecretRedis]:
    password = secrets.token_urlsafe(24)
    password_file = write_secret(tmp_path / "redis_password", password + "\n")
    port = free_port()
    log = tmp_path / "redis.log"
    env = {"REDIS_PASSWORD_FILE": str(password_file)}
    proc = start_script(redis_args(port, tmp_path), env, log)
    server = SecretRedis(port, password, password_file, proc, log)
    try:
        wait_for(lambda: server.authed().ping())
        yield server
    finally:
        stop_process(proc, timeout=10)


def test_the_start_script_makes_redis_require_the_password(secret_redis: SecretRedis) -> None:
    assert secret_redis.authed().ping()
    # a plain RESP2 client, as the original DockerCoins clients are, without the password
    assert raw_command(secret_redis.port, b"GET hashes") == b"-NOAUTH Authentication required."
    with pytest.raises(redis.RedisError, match="authenticated"):  # redis-py's HELLO, refused
        secret_redis.client().get("hashes")
    with pytest.raises(redis.AuthenticationError):
        secret_redis.client("not-the-password").ping()
    # the script exec'd redis-server (same pid: it gets the stop signal), and the password
    # is in neither its command line nor its environment
    pid = secret_redis.proc.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert cmdline.startswith(b"redis-server")
    assert secret_redis.password.encode() not in cmdline
    assert secret_redis.password.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert "NoNewPrivs:\t1" in Path(f"/proc/{pid}/status").read_text()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert secret_redis.password not in ps.stdout
    stop_process(secret_redis.proc, timeout=10)
    assert secret_redis.proc.returncode == 0  # SIGTERM reached redis-server: a clean exit
    assert secret_redis.password not in secret_redis.log.read_text()


def test_the_health_check_authenticates(secret_redis: SecretRedis) -> None:
    with_file = {**os.environ, "REDIS_PASSWORD_FILE": str(secret_redis.password_file)}
    healthy = subprocess.run(
        [str(PING), str(secret_redis.port)],
        env=with_file,
        capture_output=True,
        text=True,
        check=False,
    )
    assert healthy.returncode == 0, healthy.stderr
    without = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD_FILE"}
    unhealthy = subprocess.run(
        [str(PING), str(secret_redis.port)],
        env=without,
        capture_output=True,
        text=True,
        check=False,
    )
    assert unhealthy.returncode == 1
    assert "NOAUTH" in unhealthy.stderr
    assert secret_redis.password not in healthy.stdout + healthy.stderr


def test_without_a_password_file_redis_runs_as_before(tmp_path: Path) -> None:
    port = free_port()
    proc = start_script(redis_args(port, tmp_path), {"REDIS_PASSWORD_FILE": ""}, tmp_path / "log")
    try:
        client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=5)
        wait_for(client.ping)
        assert client.incrby("hashes", 3) == 3
    finally:
        stop_process(proc, timeout=10)
    other = subprocess.run(
        [str(START), "echo", "any other command"], capture_output=True, check=False
    )
    assert other.stdout == b"any other command\n"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot be read"),
        ("", "holds no password"),
        ("\n", "holds no password"),
        ("two words\n", "characters a Redis password here cannot have"),
        ('quo"te', "characters a Redis password here cannot have"),
    ],
)
def test_the_start_script_refuses_a_bad_password_file(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "redis_password"
    if content is not None:
        write_secret(path, content)
    done = subprocess.run(
        [str(START), "redis-server", "--port", str(free_port()), "--bind", LOOPBACK],
        env={**os.environ, "REDIS_PASSWORD_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"REDIS_PASSWORD_FILE='{path}'" in lines[0]
    assert reason in lines[0]
    if content and content.strip():
        assert content.strip() not in lines[0]


# The worker and webui against that Redis.


def backends(start_service: StartService) -> tuple[ServiceProcess, ServiceProcess]:
    rng = start_service("rng", RNG_DELAY="0", RNG_CONCURRENCY="8")
    hasher = start_service("hasher", HASHER_DELAY="0")
    return rng, hasher


def test_the_worker_mines_with_the_password_file(
    start_service: StartService, secret_redis: SecretRedis, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    metrics_port = free_port()
    worker = start_service(
        "worker",
        wait=False,
        RNG_URL=f"{rng.url}/32",
        HASHER_URL=f"{hasher.url}/",
        REDIS_URL=secret_redis.url,
        REDIS_PASSWORD_FILE=str(secret_redis.password_file),
        WORKER_DELAY="0.005",
        WORKER_HEARTBEAT=str(tmp_path / "heartbeat"),
        WORKER_METRICS_PORT=str(metrics_port),
    )
    db = secret_redis.authed()
    wait_for(lambda: int(db.get("hashes") or 0) > 0, timeout=30)
    metrics = httpx.get(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5).text
    assert "dockercoins_worker_loops_total" in metrics
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0
    logs = worker.logs()
    assert "password from REDIS_PASSWORD_FILE" in logs
    assert "authenticat" not in logs.lower()  # no refused write on the way
    for text in (metrics, logs):
        assert secret_redis.password not in text


def test_a_worker_without_the_password_gets_noauth_and_mines_nothing(
    start_service: StartService, secret_redis: SecretRedis, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    worker = start_service(
        "worker",
        wait=False,
        RNG_URL=f"{rng.url}/32",
        HASHER_URL=f"{hasher.url}/",
        REDIS_URL=secret_redis.url,
        WORKER_DELAY="0.005",
        WORKER_HEARTBEAT=str(tmp_path / "heartbeat"),
        WORKER_METRICS_PORT=str(free_port()),
    )
    wait_for(lambda: "authenticated" in worker.logs(), timeout=30)
    assert secret_redis.authed().get("hashes") is None
    assert worker.proc is not None and worker.proc.poll() is None  # it waits, it does not die


def test_webui_reads_with_the_password_file(
    start_service: StartService, secret_redis: SecretRedis
) -> None:
    secret_redis.authed().set("hashes", 77)
    webui = start_service(
        "webui",
        REDIS_URL=secret_redis.url,
        REDIS_PASSWORD_FILE=str(secret_redis.password_file),
    )
    answers = [httpx.get(webui.url + path, timeout=5) for path in ("/json", "/ledger", "/metrics")]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[0].json()["hashes"] == 77
    assert answers[1].json()["hashes"] == 77
    webui.stop()
    assert "password from REDIS_PASSWORD_FILE" in webui.logs()
    for text in (*(answer.text for answer in answers), webui.logs()):
        assert secret_redis.password not in text


def test_webui_with_a_wrong_password_answers_503_without_it(
    start_service: StartService, secret_redis: SecretRedis, tmp_path: Path
) -> None:
    wrong = secrets.token_urlsafe(24)
    webui = start_service(
        "webui",
        REDIS_URL=secret_redis.url,
        REDIS_PASSWORD_FILE=str(write_secret(tmp_path / "wrong", wrong)),
    )
    answer = httpx.get(webui.url + "/json", timeout=5)
    assert answer.status_code == 503
    assert "redis unavailable" in answer.json()["error"]
    without = start_service("webui", REDIS_URL=secret_redis.url)
    refused = httpx.get(without.url + "/json", timeout=5)
    assert refused.status_code == 503
    assert "authenticated" in refused.json()["error"]
    webui.stop()
    for text in (answer.text, webui.logs()):
        assert wrong not in text
        assert secret_redis.password not in text


@pytest.mark.parametrize("service", ["worker", "webui"])
@pytest.mark.parametrize(
    ("content", "reason"), [(None, "cannot be read"), ("", "holds no password")]
)
def test_a_bad_password_file_stops_the_service_in_one_line(
    start_service: StartService, tmp_path: Path, service: str, content: str | None, reason: str
) -> None:
    path = tmp_path / "redis_password"
    if content is not None:
        write_secret(path, content)
    process = start_service(
        service,
        wait=False,
        REDIS_URL=f"redis://{LOOPBACK}:{free_port()}/0",
        REDIS_PASSWORD_FILE=str(path),
        WORKER_METRICS_PORT=str(free_port()),
    )
    assert process.proc is not None
    assert process.proc.wait(20) == 2
    lines = process.logs().strip().splitlines()
    assert len(lines) == 1, process.logs()
    assert f"bad setting: REDIS_PASSWORD_FILE='{path}' {reason}" in lines[0]
