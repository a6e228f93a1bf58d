"""Redis's password as a swarm secret in the specs `deploy` writes (redis, worker and webui
read /run/secrets/redis_password, owned by their image's user, mode 0400; the password in
no spec), and which secret a redeploy keeps: pure functions and a fake daemon."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dockercoins.images import kinds
from dockercoins.names import MANAGED_LABEL
from dockercoins.swarm import redis_secret
from dockercoins.swarm.redis_secret import SecretRef
from dockercoins.swarm.specs import Images, Modes, service_spec, spec_changes, updated_spec

IMAGES = Images("10.9.0.1:5000", "dockercoins", "v1")
MODES = Modes(endpoint="dnsrr", publish="host")
SECRET = SecretRef("sec1", "dockercoins-redis-password-0123456789ab")
OWNERS = {"redis": (kinds.REDIS_UID, kinds.REDIS_GID), "worker": (10001, 10001)}
OWNERS["webui"] = (10001, 10001)


@pytest.mark.parametrize("name", ["redis", "worker", "webui"])
def test_readers_get_the_secret_as_a_private_file(name: str) -> None:
    container = service_spec(name, IMAGES, MODES, "n", secret=SECRET)["TaskTemplate"][
        "ContainerSpec"
    ]
    uid, gid = OWNERS[name]
    assert container["Secrets"] == [
        {
            "File": {"Name": "redis_password", "UID": str(uid), "GID": str(gid), "Mode": 0o400},
            "SecretID": "sec1",
            "SecretName": SECRET.name,
        }
    ]
    assert "REDIS_PASSWORD_FILE=/run/secrets/redis_password" in container["Env"]


@pytest.mark.parametrize("name", ["hasher", "rng"])
def test_the_others_get_no_secret(name: str) -> None:
    container = service_spec(name, IMAGES, MODES, "n", secret=SECRET)["TaskTemplate"][
        "ContainerSpec"
    ]
    assert "Secrets" not in container
    assert not any(item.startswith("REDIS_PASSWORD") for item in container.get("Env", []))


def test_the_password_file_path_wins_over_an_env_override() -> None:
    env = {"REDIS_PASSWORD_FILE": "/tmp/elsewhere", "WORKER_DELAY": "0"}
    container = service_spec("worker", IMAGES, MODES, "n", env=env, secret=SECRET)["TaskTemplate"][
        "ContainerSpec"
    ]
    assert sorted(container["Env"]) == [
        "REDIS_PASSWORD_FILE=/run/secrets/redis_password",
        "WORKER_DELAY=0",
    ]


def test_a_service_of_an_older_deploy_gets_the_secret_and_read_back_is_unchanged() -> None:
    old = service_spec("webui", IMAGES, MODES, "n")  # deployed before the password
    desired = service_spec("webui", IMAGES, MODES, "n", secret=SECRET)
    assert spec_changes(old, desired, with_scale=False) == ["env", "secrets"]
    updated = updated_spec(old, desired, with_scale=False)
    assert spec_changes(updated, desired, with_scale=False) == []
    assert updated["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] == "sec1"
    # another secret (a new password after `down`) is a change too
    other = service_spec("webui", IMAGES, MODES, "n", secret=SecretRef("sec2", "x"))
    assert spec_changes(updated, other, with_scale=False) == ["secrets"]


def test_secret_names_follow_the_content_and_never_hold_the_password() -> None:
    one, two = redis_secret.new_password(), redis_secret.new_password()
    assert one != two
    assert len(one) == 43 and one.replace("-", "").replace("_", "").isalnum()
    assert redis_secret.secret_name(one) == redis_secret.secret_name(one)
    assert redis_secret.secret_name(one) != redis_secret.secret_name(two)
    assert one not in redis_secret.secret_name(one)
    assert redis_secret.secret_name(one).startswith("dockercoins-redis-password-")


class FakeSecrets:
    """client.api's secrets calls, over a list like the daemon's answer."""

    def __init__(self, found: list[dict[str, Any]]) -> None:
        self.found = found
        self.created: list[tuple[str, bytes]] = []
        self.removed: list[str] = []
        self.api = self

    def secrets(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        assert filters == {"label": MANAGED_LABEL}
        return list(self.found)

    def create_secret(self, name: str, data: bytes, labels: dict[str, str]) -> dict[str, str]:
        self.created.append((name, data))
        assert labels == {MANAGED_LABEL: "1"}
        return {"ID": "new1"}

    def remove_secret(self, secret_id: str) -> None:
        self.removed.append(secret_id)


def _secret(secret_id: str, name: str, created: str) -> dict[str, Any]:
    return {"ID": secret_id, "Spec": {"Name": name}, "CreatedAt": created}


PREFIX = redis_secret.SECRET_NAME_PREFIX


def test_a_first_deploy_makes_a_secret_named_by_its_password() -> None:
    fake = FakeSecrets([_secret("other", "not-ours", "2026-01-01")])
    ref, created = redis_secret.ensure_secret(fake, None)
    [(name, data)] = fake.created
    assert created and ref == SecretRef("new1", name)
    assert name == redis_secret.secret_name(data.decode())
    assert len(data) == 43


def test_a_redeploy_keeps_the_secret_redis_reads() -> None:
    found = [
        _secret("s1", PREFIX + "aaaaaaaaaaaa", "2026-01-01"),
        _secret("s2", PREFIX + "bbbbbbbbbbbb", "2026-02-01"),
    ]
    fake = FakeSecrets(found)
    assert redis_secret.ensure_secret(fake, PREFIX + "aaaaaaaaaaaa") == (
        SecretRef("s1", PREFIX + "aaaaaaaaaaaa"),
        False,
    )
    # redis reads none of ours (deployed by hand, or before): the newest of ours
    assert redis_secret.ensure_secret(fake, None)[0].id == "s2"
    assert fake.created == []


def test_used_secret_reads_the_service_spec() -> None:
    spec = service_spec("redis", IMAGES, MODES, "n", secret=SECRET)
    assert redis_secret.used_secret({"Spec": spec}) == SECRET.name
    assert redis_secret.used_secret({"Spec": service_spec("redis", IMAGES, MODES, "n")}) is None
    assert redis_secret.used_secret(None) is None


def test_remove_secrets_keeps_one_and_leaves_others_alone() -> None:
    found = [
        _secret("s1", PREFIX + "aaaaaaaaaaaa", "2026-01-01"),
        _secret("s2", PREFIX + "bbbbbbbbbbbb", "2026-02-01"),
        _secret("s3", "someone-elses", "2026-02-01"),
    ]
    fake = FakeSecrets(found)
    assert redis_secret.remove_secrets(fake, keep=PREFIX + "bbbbbbbbbbbb") == [
        PREFIX + "aaaaaaaaaaaa"
    ]
    assert fake.removed == ["s1"]


def test_no_spec_holds_a_password() -> None:
    password = redis_secret.new_password()
    ref = SecretRef("sec9", redis_secret.secret_name(password))
    for name in ("redis", "hasher", "rng", "webui", "worker"):
        text = json.dumps(service_spec(name, IMAGES, MODES, "n", secret=ref))
        assert password not in text, name
