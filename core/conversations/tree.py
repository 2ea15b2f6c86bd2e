"""Which rows form the active path: pure functions over a conversation's message tree."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Node:
    id: uuid.UUID
    parent_id: uuid.UUID | None
    sequence_number: int
    activated_at: datetime
    revision_number: int


class Tree:
    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes = {node.id: node for node in nodes}
        self.children: dict[uuid.UUID | None, list[Node]] = defaultdict(list)
        for node in self.nodes.values():
            self.children[node.parent_id].append(node)

    def ancestors(self, node_id: uuid.UUID) -> list[uuid.UUID]:
        """The chain from the root down to `node_id`, inclusive."""
        chain: list[uuid.UUID] = []
        current: uuid.UUID | None = node_id
        while current is not None:
            chain.append(current)
            current = self.nodes[current].parent_id
        chain.reverse()
        return chain

    def most_recent_child(self, node_id: uuid.UUID) -> Node | None:
        """The child that was part of the active path most recently."""
        kids = self.children.get(node_id)
        if not kids:
            return None
        return max(kids, key=lambda n: (n.activated_at, n.revision_number))

    def path_through(self, node_id: uuid.UUID) -> list[uuid.UUID]:
        """Ancestors of `node_id`, the node, then the most recently active child at
        each step below it: the active path once `node_id` is switched to."""
        path = self.ancestors(node_id)
        child = self.most_recent_child(node_id)
        while child is not None:
            path.append(child.id)
            child = self.most_recent_child(child.id)
        return path
