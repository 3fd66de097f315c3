"""What a compaction says of a freed node, in the words of who takes it away, on one clock (no Ray)."""

from __future__ import annotations

import pytest

from servelab.errors import MAGIC, SIDEBAR
from servelab.serving.autoscaler import NodeLimits, termination_line
from servelab.serving.context import NodeType, Session
from servelab.serving.executor import (
    AUTOSCALER,
    NOBODY,
    SERVELAB,
    released_line,
    unowned_nodes_error,
    unowned_nodes_warning,
    who_frees,
)

ONE_TYPE = {"gpu2": NodeType(cpus=1, gpus=2)}


@pytest.mark.parametrize(
    ("session", "autoscaled", "frees"),
    [
        (Session("127.0.0.1:6379", object(), ONE_TYPE), False, SERVELAB),  # up(): the fixed embedded cluster
        (Session("127.0.0.1:6379", object(), ONE_TYPE, autoscaling={"gpu2": NodeLimits(0, 3)}), True, AUTOSCALER),
        (Session("10.0.0.2:6379", None, {}), True, AUTOSCALER),  # attached; its autoscaler reports state
        (Session("10.0.0.2:6379", None, {}), False, NOBODY),  # attached to a cluster no autoscaler serves
        (None, False, NOBODY),  # the automatic compactor on the head, with no session of its own
    ],
)
def test_who_takes_a_freed_node_away(session: Session | None, autoscaled: bool, frees: str) -> None:
    assert who_frees(session, autoscaled) == frees


def test_each_kind_of_cluster_gets_its_own_words_for_a_released_node() -> None:
    node = "3f2a1c9e" + "0" * 48
    assert released_line(node, SERVELAB) == (
        "3f2a1c9e released: servelab removed its raylet (this fixed cluster has no autoscaler; "
        "on a real cluster the node's machine would be given back)"
    )
    assert "the autoscaler terminates the node once its idle timeout passes" in released_line(node, AUTOSCALER)
    nobody = released_line(node, NOBODY)
    assert "no autoscaler serves this cluster" in nobody and "machine keeps running" in nobody
    assert "autoscaler terminates" not in nobody


def test_a_termination_is_told_on_the_compactions_own_clock() -> None:
    # Drained 2.0 s into the run, seen terminated at 13.8 s: 11.8 s after the drain, and both times shown.
    assert termination_line("3f2a1c9e" + "0" * 48, 13.8 - 2.0, 2.0) == (
        "3f2a1c9e terminated by the autoscaler 11.8 s after its drain at 2.0 s"
    )


def test_freeing_nodes_no_autoscaler_owns_is_said_before_and_refused_in_each_faces_words() -> None:
    nodes = ["3f2a1c9e" + "0" * 48, "77aa01bc" + "0" * 48]
    assert unowned_nodes_warning(nodes) == (
        "no autoscaler serves this cluster: compacting drains 2 node(s) (3f2a1c9e, 77aa01bc), whose Ray processes then "
        "exit while their machines keep running until their owner stops or reuses them."
    )
    error = unowned_nodes_error(nodes)
    assert str(error).endswith("Nothing was changed. To go ahead, call compact(plan, release_unowned_nodes=True).")
    assert error.in_words_of(MAGIC).endswith("To go ahead, run %compact --release-unowned.")
    assert error.in_words_of(SIDEBAR).endswith("To go ahead, press Compact and confirm.")
