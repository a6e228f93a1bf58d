"""The lab's swarm: nodes 1..M its managers (init on node1, the others join with the manager
token), the rest its workers; a bounded wait until every node is ready in its role.

Each step checks what is there first, so a swarm that works is kept as it is: a running
lab keeps its roles, and a lab whose manager count changes is promoted or demoted to match,
one node at a time. Raft needs a majority of the managers to act, so 3 managers survive the
loss of one (2 of 3 left), while 2 managers do not (1 of 2 is no majority): the default is
3 managers when there are 3 nodes or more, else every node."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.lab import network as labnet
from dockercoins.lab import nodes

SWARM_PORT = 2377
READY_TIMEOUT = 90.0
LEADER_TIMEOUT = 30.0  # seconds the managers have to elect a leader (after restarts)
# seconds a node may be `down` in the swarm's list while its own dockerd says it is active
# (the swarm marks a node down after 3 missed heartbeats of 5 s: 15 s)
STUCK_AFTER = 20.0
SETTLE_TIMEOUT = 20.0  # seconds a node may say "pending" before `up` decides about it
RELEASE_TIMEOUT = 30.0  # seconds for the managers of nodes that leave to be demoted
MANAGER = "manager"
WORKER = "worker"


def default_managers(count: int) -> int:
    """How many of `count` nodes are managers by default: 3, or every node when fewer."""
    return min(3, count)


def check_managers(managers: int, count: int) -> None:
    """UserError unless 1 <= managers <= count."""
    if not 1 <= managers <= count:
        raise UserError(f"--managers {managers}: a lab of {count} nodes has 1 to {count} managers")


def swarm_info(client: Any) -> dict[str, Any]:
    """The `Swarm` part of the daemon's info ({} when it has none)."""
    info: dict[str, Any] = client.info().get("Swarm", {})
    return info


def _address(index: int) -> str:
    return f"{labnet.node_ip(index)}:{SWARM_PORT}"


def _is_manager(info: dict[str, Any], index: int) -> bool:
    """Node `index`'s own view: an active manager at its address."""
    return bool(
        info.get("LocalNodeState") == "active"
        and info.get("ControlAvailable")
        and info.get("NodeAddr") == labnet.node_ip(index)
    )


def _member_ok(info: dict[str, Any], index: int, cluster: dict[str, Any]) -> bool:
    """Node `index` is an active member of this swarm at its own address (any role)."""
    return bool(
        info.get("LocalNodeState") == "active"
        and info.get("NodeAddr") == labnet.node_ip(index)
        and info.get("NodeID") in cluster
    )


def leave(client: Any) -> None:
    """Make the daemon leave whatever swarm it is in (forced; no-op when it is in none)."""
    import docker.errors

    if swarm_info(client).get("LocalNodeState", "inactive") != "inactive":
        with contextlib.suppress(docker.errors.APIError):
            client.swarm.leave(force=True)


def _settled_infos(clients: dict[int, Any]) -> dict[int, dict[str, Any]]:
    """Each node's swarm info, once none says "pending" (a node that just started and is
    connecting to its swarm; bounded by SETTLE_TIMEOUT, then taken as it is)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        infos = {i: swarm_info(client) for i, client in clients.items()}
        pending = any(info.get("LocalNodeState") == "pending" for info in infos.values())
        if not pending or time.monotonic() > deadline:
            return infos
        time.sleep(0.5)


def _with_leader(clients: dict[int, Any], candidates: list[int]) -> int | None:
    """The first of `candidates` (managers by their own view) whose node list answers, i.e.
    whose swarm has a leader; waits up to LEADER_TIMEOUT for an election (managers that
    just came back). None when none answers by then."""
    import docker.errors

    deadline = time.monotonic() + LEADER_TIMEOUT
    while True:
        for index in candidates:
            try:
                clients[index].nodes.list()
            except docker.errors.APIError:
                continue
            return index
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def _role(node: Any) -> str:
    """A node entry's role as the swarm runs it: "manager" once it is a reachable member of
    raft, "worker" once it has no raft membership left, else "<role> (changing)"."""
    spec_role = str(node.attrs["Spec"]["Role"])
    status = node.attrs.get("ManagerStatus") or {}
    if spec_role == MANAGER and status.get("Reachability") == "reachable":
        return MANAGER
    if spec_role == WORKER and not status:
        return WORKER
    return f"{spec_role} (changing)"


def ensure_swarm(
    count: int, managers: int | None = None, restart: Callable[[int], None] | None = None
) -> None:
    """Nodes 1..`managers` managers (default: default_managers), the others workers, all
    ready; stale entries removed. Keeps what works; promotes or demotes to match.
    `restart(index)` restarts a node's dockerd: used (once) for a node that is active by its
    own account but stays down in the swarm's list (see _wait_ready)."""
    wanted_managers = default_managers(count) if managers is None else managers
    check_managers(wanted_managers, count)
    roles = {i: MANAGER if i <= wanted_managers else WORKER for i in range(1, count + 1)}
    clients = {i: nodes.client(i, timeout=60) for i in roles}
    try:
        _ensure(clients, roles, restart)
    finally:
        for client in clients.values():
            client.close()


def _ensure(
    clients: dict[int, Any], roles: dict[int, str], restart: Callable[[int], None] | None
) -> None:
    infos = _settled_infos(clients)
    # a working swarm is kept: its managers that should stay managers are asked first
    candidates = sorted(
        (i for i, info in infos.items() if _is_manager(info, i)),
        key=lambda i: (roles[i] != MANAGER, i),
    )
    anchor = _with_leader(clients, candidates) if candidates else None
    if anchor is None and candidates:
        names = ", ".join(labnet.node_name(i) for i in candidates)
        raise UserError(
            f"the lab's swarm has managers ({names}) but no leader after "
            f"{LEADER_TIMEOUT:.0f} s: a majority of its managers is lost; "
            "`dockercoins lab down` then `dockercoins lab up` makes a new swarm"
        )
    if anchor is None:  # no swarm: a new one, node1 its first manager
        for client in clients.values():
            leave(client)
        clients[1].swarm.init(advertise_addr=labnet.node_ip(1), listen_addr=_address(1))
        anchor = 1
        infos = {i: swarm_info(client) for i, client in clients.items()}
    view = clients[anchor]
    cluster = {node.id: node for node in view.nodes.list()}
    rejoin = [i for i in roles if not _member_ok(infos[i], i, cluster)]
    for index in rejoin:
        leave(clients[index])
    members = {infos[i].get("NodeID") for i in roles if i not in rejoin}
    _forget_stale_nodes(view, members, joining=[labnet.node_name(i) for i in rejoin])
    view.swarm.reload()
    tokens = view.swarm.attrs["JoinTokens"]
    for index in rejoin:  # in index order, so managers first: later joins may use them
        remotes = [_address(i) for i in sorted(cluster_managers(view))]
        clients[index].swarm.join(
            remote_addrs=remotes or [_address(anchor)],
            join_token=tokens["Manager" if roles[index] == MANAGER else "Worker"],
            advertise_addr=labnet.node_ip(index),
            listen_addr=_address(index),
        )
    ids = {i: swarm_info(clients[i]).get("NodeID") for i in roles}
    _change_roles(view, ids, roles, want=MANAGER)  # promotions first: the majority grows
    view = clients[1]  # node1 is always a manager now: demotions (of the anchor too) from it
    _wait(lambda: _lists_nodes(view), "node1 answering as a manager")
    _change_roles(view, ids, roles, want=WORKER)
    _wait_ready(view, clients, ids, roles, restart)
    _forget_stale_nodes(view, set(ids.values()))


def release(leaving: list[int], staying: list[int]) -> None:
    """Before nodes `leaving` go for good (`up` with fewer nodes, `down`): those that are
    managers are demoted first, through a manager of `staying`, so that raft keeps its
    majority without them (a manager leaving a swarm that lost its majority hangs), then
    their entries are removed. Best effort: nothing happens when no staying manager
    answers with a leader."""
    import docker.errors
    import requests

    answering = [i for i in staying if nodes.daemon(i).answers()]
    clients = {i: nodes.client(i, timeout=30) for i in answering}
    try:
        view = next((clients[i] for i in answering if _lists_nodes(clients[i])), None)
        if view is None:
            return
        names = {labnet.node_name(i) for i in leaving}
        gone = [n for n in view.nodes.list() if n.attrs["Description"].get("Hostname") in names]
        demoting = []
        for node in gone:
            if node.attrs["Spec"]["Role"] != MANAGER:
                continue
            hostname = node.attrs["Description"]["Hostname"]
            try:
                _set_role(view, node.id, WORKER)
            except docker.errors.APIError as error:
                ui.info(f"warning: {hostname} not demoted before it leaves: {error.explanation}")
                continue
            ui.info(f"{hostname}: demoted to worker (it leaves)")
            demoting.append(node.id)

            def demoted() -> bool:  # one at a time: raft removes one member at a time
                return all(_role(view.nodes.get(node_id)) == WORKER for node_id in demoting)

            _wait(demoted, f"{hostname} demoted", timeout=RELEASE_TIMEOUT)
        for node in gone:
            with contextlib.suppress(docker.errors.APIError):
                view.api.remove_node(node.id, force=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException, UserError):
        return  # best effort: `up` forgets what is left once it is down
    finally:
        for client in clients.values():
            client.close()


def cluster_managers(view: Any) -> list[int]:
    """Lab node indexes of the swarm's reachable managers."""
    found = []
    for node in view.nodes.list():
        status = node.attrs.get("ManagerStatus") or {}
        hostname = node.attrs["Description"].get("Hostname", "")
        if status.get("Reachability") == "reachable" and labnet.NODE_NAME.match(hostname):
            found.append(labnet.node_index(hostname))
    return found


def _lists_nodes(client: Any) -> bool:
    import docker.errors

    try:
        client.nodes.list()
    except docker.errors.APIError:
        return False
    return True


def _change_roles(view: Any, ids: dict[int, Any], roles: dict[int, str], want: str) -> None:
    """The nodes that should be `want` and are not: their roles changed, then a wait until
    the swarm runs them so. Promotions all at once (each takes a new certificate: tens of
    seconds); demotions one at a time (raft removes one member at a time, and refuses a
    removal while another is pending)."""
    changing: dict[int, str] = {}

    def settled() -> bool:
        return all(_role(view.nodes.get(node_id)) == want for node_id in changing.values())

    for index, node_id in sorted(ids.items()):
        node = view.nodes.get(node_id)
        if roles[index] != want or _role(node) == want:
            continue
        changing[index] = node_id
        if node.attrs["Spec"]["Role"] != want:
            _set_role(view, node_id, want)
            verb = "promoted to manager" if want == MANAGER else "demoted to worker"
            ui.info(f"{labnet.node_name(index)}: {verb}")
        if want == WORKER:
            _wait(settled, f"{labnet.node_name(index)} a worker as asked")
    names = ", ".join(labnet.node_name(index) for index in changing)
    _wait(settled, f"{names} a {want} as asked")


def _set_role(view: Any, node_id: str, role: str) -> None:
    """Set the node's role in its spec (read afresh: an update names the version it
    changes, and a node's version moves whenever its status does; a few tries)."""
    import docker.errors

    for attempt in range(1, 6):
        node = view.nodes.get(node_id)
        if node.attrs["Spec"]["Role"] == role:
            return
        spec = dict(node.attrs["Spec"])
        spec["Role"] = role
        try:
            node.update(spec)
            return
        except docker.errors.APIError:
            if attempt == 5:
                raise
            time.sleep(0.5)


def _wait(done: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise UserError(f"swarm: {what} not within {timeout:.0f} s")
        time.sleep(0.5)


def _wait_ready(
    view: Any,
    clients: dict[int, Any],
    ids: dict[int, Any],
    roles: dict[int, str],
    restart: Callable[[int], None] | None,
) -> None:
    """Every node ready in the swarm's list and in its role, as the swarm and the node
    itself see it (a manager's own info says it can manage).

    A node that came back just as a new leader gave up on it can stay `down` in the list
    for good while its agent is connected and content (the leader's heartbeat timeout
    overwrites the registration): once a node active by its own account has been down
    in the list for STUCK_AFTER seconds, its dockerd is restarted (once), and it
    registers again."""
    deadline = time.monotonic() + READY_TIMEOUT
    states: dict[str, str] = {}
    down_since: dict[int, float] = {}
    restarted: set[int] = set()
    managers = [view] + [clients[i] for i in sorted(clients) if roles[i] == MANAGER]
    while time.monotonic() < deadline:
        by_id = _node_list(managers)
        states = {}
        for index, node_id in ids.items():
            node = by_id.get(node_id)
            name = labnet.node_name(index)
            if node is None:
                states[name] = "missing"
                continue
            state = node.attrs["Status"]["State"]
            role = _role(node)
            own_info = _own_info(clients[index])
            own = MANAGER if own_info.get("ControlAvailable") else WORKER
            fine = state == "ready" and role == own == roles[index]
            states[name] = "ready" if fine else f"{state} {role}"
            stuck = state == "down" and own_info.get("LocalNodeState") == "active"
            if not stuck:
                down_since.pop(index, None)
                continue
            since = down_since.setdefault(index, time.monotonic())
            if restart and index not in restarted and time.monotonic() - since > STUCK_AFTER:
                ui.info(f"{name}: active, but down in the swarm's list: restarting its dockerd")
                restart(index)
                restarted.add(index)
                down_since.pop(index, None)
        if all(state == "ready" for state in states.values()):
            return
        time.sleep(0.5)
    not_ready = ", ".join(f"{name}={state}" for name, state in sorted(states.items()))
    raise UserError(f"swarm nodes not ready within {READY_TIMEOUT:.0f} s: {not_ready or 'none'}")


def _node_list(managers: list[Any]) -> dict[str, Any]:
    """node id -> node entry, from the first of `managers` that lists them ({} if none)."""
    import docker.errors
    import requests

    for client in managers:
        try:
            return {node.id: node for node in client.nodes.list()}
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            continue
    return {}


def _own_info(client: Any) -> dict[str, Any]:
    """The node's own swarm info; {} while its dockerd does not answer (restarting)."""
    import docker.errors
    import requests

    try:
        return swarm_info(client)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return {}


def _forget_stale_nodes(view: Any, members: Iterable[Any], joining: Iterable[str] = ()) -> None:
    """Entries of earlier joins that are `down`, and every other entry of a node that
    joins again (hostname in `joining`): removed; a stale manager entry is demoted first,
    so that it no longer counts in raft's majority (bounded; what cannot be removed now is
    left for the next `up`)."""
    import docker.errors

    keep = set(members)
    again = set(joining)
    for node in view.nodes.list():
        hostname = node.attrs["Description"].get("Hostname")
        if node.id in keep:
            continue
        if node.attrs["Status"]["State"] != "down" and hostname not in again:
            continue
        with contextlib.suppress(docker.errors.APIError):
            _set_role(view, node.id, WORKER)
            deadline = time.monotonic() + 30.0
            while True:
                try:
                    view.api.remove_node(node.id, force=True)
                    break
                except docker.errors.APIError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
