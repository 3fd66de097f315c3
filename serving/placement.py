"""Placement rules: whether a replica may go on a node (room for its resources, labels that match)."""

from __future__ import annotations

from servelab.serving.snapshot import Node

EPSILON = 1e-6


def fits(free: dict[str, float], need: dict[str, float]) -> bool:
    """Whether ``need`` fits into ``free`` (absent resources count as zero)."""
    return all(free.get(name, 0.0) + EPSILON >= amount for name, amount in need.items() if amount > 0)


def label_match(node: Node, selector: dict[str, str]) -> bool:
    """Whether ``node`` carries every label of a replica's label selector."""
    return all(node.labels.get(key) == value for key, value in selector.items())
