"""`lab node kill|stop|start NODE`: one node of a running lab down hard, down cleanly, or
back. `lab up` repairs every node as well; these act on one and change nothing else."""

from __future__ import annotations

from dockercoins.errors import UserError
from dockercoins.lab import cluster, lifecycle, nodes
from dockercoins.lab import network as labnet
from dockercoins.lab import state as lab_state
from dockercoins.lab.state import LabState


def member(name: str) -> tuple[LabState, int]:
    """The recorded lab and the index of its node `name`; UserError when no lab is up or
    the lab has no such node."""
    state = lab_state.load()
    if state is None:
        raise UserError("no lab is up: bring one up with `dockercoins lab up`")
    names = [node.name for node in state.nodes]
    if name not in names:
        raise UserError(f"{name} is not a node of the lab ({', '.join(names)})")
    return state, labnet.node_index(name)


def kill(name: str) -> int:
    """A power loss of node `name`: its daemons and containers SIGKILLed in one frozen
    moment, nothing cleaned. Returns how many processes were killed."""
    _, index = member(name)
    lifecycle.require_root()
    with lifecycle.locked():
        return nodes.kill(index)


def stop(name: str) -> None:
    """Stop node `name`'s dockerd cleanly (it stops its containers), and whatever is left."""
    _, index = member(name)
    lifecycle.require_root()
    with lifecycle.locked():
        nodes.stop(index)


def start(name: str) -> None:
    """Bring node `name` back (namespace and dockerd as `lab up` makes them) and into the
    swarm in the role `lab up` gave it; the other nodes must be up."""
    state, index = member(name)
    lifecycle.require_root()
    with lifecycle.locked():
        labnet.ensure_bridge()
        labnet.ensure_forward_rule()
        lifecycle.ensure_node(index)
        cluster.ensure_swarm(
            len(state.nodes), len(state.manager_nodes), restart=lifecycle.restart_node
        )
