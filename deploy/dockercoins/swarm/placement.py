"""Where redis runs: the one node that carries the node label specs.REDIS_NODE_LABEL.

Redis keeps its data on a local volume, so it must come back to the same node: `deploy`
labels one node and redis's placement constraint asks for that label. The first deploy
labels the manager it talks to (or the node `--redis-node` names); later deploys keep the
labelled node. Moving redis to another node would start it from that node's (empty)
volume, so `deploy` refuses and says how to move it on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.swarm.read import Node, nodes
from dockercoins.swarm.specs import REDIS_NODE_LABEL

LABEL_VALUE = "true"


@dataclass(frozen=True)
class RedisPlacement:
    """The node redis runs on, whether the label must be set there, and the nodes whose
    label must go."""

    node: Node
    add: bool
    remove: tuple[Node, ...] = ()


def labelled(all_nodes: list[Node]) -> list[Node]:
    """The nodes that carry REDIS_NODE_LABEL=true."""
    return [node for node in all_nodes if node.labels.get(REDIS_NODE_LABEL) == LABEL_VALUE]


def redis_node(all_nodes: list[Node]) -> Node | None:
    """The node redis is pinned to, None when no node (or more than one) carries the label."""
    found = labelled(all_nodes)
    return found[0] if len(found) == 1 else None


def find_node(all_nodes: list[Node], name: str) -> Node:
    """The node with this hostname, ID or unique ID prefix; UserError naming the nodes."""
    for node in all_nodes:
        if name in (node.hostname, node.id):
            return node
    by_prefix = [node for node in all_nodes if len(name) >= 3 and node.id.startswith(name)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    known = ", ".join(node.hostname for node in all_nodes) or "none"
    raise UserError(f"unknown node {name!r} for --redis-node: the swarm's nodes are {known}")


def plan(all_nodes: list[Node], requested: str | None, manager_id: str) -> RedisPlacement:
    """Which node redis goes to (pure). Without `requested`: the labelled node, else the
    manager `manager_id`. UserError for an unknown node, for a move away from the node
    that holds redis's data, and for several labelled nodes with nothing requested."""
    marked = labelled(all_nodes)
    label = f"{REDIS_NODE_LABEL}={LABEL_VALUE}"
    if requested is not None:
        target = find_node(all_nodes, requested)
        if marked and target not in marked:
            held = ", ".join(node.hostname for node in marked)
            raise UserError(
                f"redis's data is on {held} (node label {label}): redis on {target.hostname} "
                f"would start from that node's own volume; to move it on purpose, first "
                f"`docker node update --label-rm {REDIS_NODE_LABEL} {marked[0].hostname}`"
            )
    elif len(marked) > 1:
        held = ", ".join(node.hostname for node in marked)
        raise UserError(
            f"several nodes carry the node label {label} ({held}): pass --redis-node with "
            "the one that holds redis's data"
        )
    elif marked:
        target = marked[0]
    else:
        managers = [node for node in all_nodes if node.id == manager_id]
        if not managers:
            raise UserError("the manager this command talks to is not in its own node list")
        target = managers[0]
    return RedisPlacement(
        node=target,
        add=target not in marked,
        remove=tuple(node for node in marked if node != target),
    )


def _set_label(client: Any, node_id: str, present: bool) -> None:
    raw = client.api.inspect_node(node_id)
    spec = dict(raw["Spec"])
    labels = dict(spec.get("Labels") or {})
    if present:
        labels[REDIS_NODE_LABEL] = LABEL_VALUE
    else:
        labels.pop(REDIS_NODE_LABEL, None)
    spec["Labels"] = labels
    client.api.update_node(node_id, raw["Version"]["Index"], spec)


def pin_redis(client: Any, requested: str | None) -> Node:
    """Label the node redis goes to (see plan) and return it; warns when it is not ready."""
    all_nodes = nodes(client)
    manager_id = str((client.api.info().get("Swarm") or {}).get("NodeID", ""))
    placed = plan(all_nodes, requested, manager_id)
    for node in placed.remove:
        _set_label(client, node.id, present=False)
        ui.info(f"    node {node.hostname}: label {REDIS_NODE_LABEL} removed")
    label = f"{REDIS_NODE_LABEL}={LABEL_VALUE}"
    if placed.add:
        _set_label(client, placed.node.id, present=True)
        ui.info(f"    node {placed.node.hostname}: label {label} set (redis runs there)")
    else:
        ui.info(f"    redis stays on {placed.node.hostname} (node label {label})")
    if placed.node.state != "ready":
        ui.info(
            f"warning: redis's node {placed.node.hostname} is {placed.node.state}: redis "
            "(and so mining) starts when it is back"
        )
    return placed.node
