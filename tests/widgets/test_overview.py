"""Large clusters summarised (servelab.widgets.overview) and what the faces make of it, from
synthetic snapshots: pure logic, no cluster, no frontend."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from servelab.jupyter_ext.model import cluster_model, plan_model
from servelab.serving.planner import plan
from servelab.serving.snapshot import Snapshot
from servelab.testing.clusters import fragmented_cluster, many_deployments_cluster
from servelab.widgets.model import FIXED, PALETTE
from servelab.widgets.overview import (
    DETAIL_NODES,
    LARGE,
    OTHERS,
    TOP_DEPLOYMENTS,
    group_detail,
    is_large,
    main_resource,
    overview,
)
from servelab.widgets.summary import plan_html, plan_text, snapshot_text


@pytest.fixture(scope="module")
def large() -> Snapshot:
    return many_deployments_cluster(120, seed=3)


def test_every_node_is_counted_once_in_its_type_and_as_one_cell(large: Snapshot) -> None:
    view = overview(large)
    assert is_large(large) and not is_large(fragmented_cluster(LARGE - 1))
    assert sum(g.nodes for g in view.groups) == len(large.nodes)
    assert Counter(c.id for c in view.cells) == Counter(n.id for n in large.nodes)
    for group in view.groups:
        mine = [n for n in large.nodes if n.type == group.type]
        assert group.nodes == len(mine)
        assert group.in_use == sum(1 for n in mine if large.replicas_on(n.id) and not n.head)
        assert group.idle == sum(1 for n in mine if not large.replicas_on(n.id) and not n.head)
        assert group.cost_per_hour == pytest.approx(sum(n.cost for n in mine))


def test_a_types_bars_add_up_to_its_nodes_totals_and_fold_small_deployments(large: Snapshot) -> None:
    view = overview(large)
    shown = set(view.shown)
    assert len(shown) == TOP_DEPLOYMENTS and view.folded == len(large.deployments) - TOP_DEPLOYMENTS
    for group in view.groups:
        for resource in {s.resource for s in group.segments}:
            parts = [s for s in group.segments if s.resource == resource]
            total = sum(n.total.get(resource, 0.0) for n in large.nodes if n.type == group.type)
            assert sum(s.amount for s in parts) == pytest.approx(total, rel=1e-6)
            assert sum(s.fraction for s in parts) == pytest.approx(1.0)
            assert {s.holder for s in parts} <= shown | set(FIXED) | {OTHERS}
        # What "other deployments" holds is exactly what the deployments not shown hold there.
        mine = {n.id for n in large.nodes if n.type == group.type}
        folded_gpu = sum(
            r.resources.get("GPU", 0.0) for r in large.replicas if r.node_id in mine and f"{r.app}/{r.deployment}" not in shown
        )
        drawn = sum(s.amount for s in group.segments if s.holder == OTHERS and s.resource == "GPU")
        assert drawn == pytest.approx(folded_gpu)


def test_the_biggest_deployments_keep_distinct_colours_and_none_is_red(large: Snapshot) -> None:
    view = overview(large)
    colours = [view.colours[name] for name in view.shown]
    assert len(set(colours)) == len(colours)
    assert not {"#E45756", "#FF9DA6"} & set(colours) and set(colours) <= set(PALETTE)
    held = Counter()
    for r in large.replicas:
        held[f"{r.app}/{r.deployment}"] += r.resources.get("GPU", 0.0)
    assert min(held[name] for name in view.shown) >= max(v for k, v in held.items() if k not in view.shown)


def test_a_plans_freed_nodes_are_marked_in_the_cells_and_counted_by_type(large: Snapshot) -> None:
    chosen = plan(large, time_limit_s=5)
    assert len(chosen.nodes_to_free) > 10  # a plan that frees many nodes
    view = overview(large, chosen)
    assert {c.id for c in view.cells if c.state == "freed"} == set(chosen.nodes_to_free)
    assert sum(g.freed for g in view.groups) == len(chosen.nodes_to_free)
    model = plan_model(chosen, large, "127.0.0.1:6379")
    named = {*chosen.nodes_to_free, *chosen.blocked, *(m.source for m in chosen.moves), *(m.target for m in chosen.moves)}
    assert set(model["labels"]) == named  # the labels of the nodes it names, not of all 121
    text = plan_text(chosen)
    assert f"and {len(chosen.moves) - 10} more move(s)" in text and len(text.splitlines()) < 30
    assert f"and {len(chosen.moves) - 10} more move(s)</summary>" in plan_html(chosen)


def test_cells_put_the_most_stranded_nodes_first_and_detail_picks_them(large: Snapshot) -> None:
    view = overview(large)
    for group in view.groups:
        stranded = [c.stranded for c in view.cells if c.type == group.type]
        assert stranded == sorted(stranded, reverse=True)
    gpu8 = [c for c in view.cells if c.type == "gpu8"]
    picked = group_detail(large, "gpu8", limit=5)
    assert [n.id for n in picked] == [c.id for c in gpu8[:5]]
    assert all(main_resource(n) == "GPU" for n in picked) and any(c.stranded > 0 for c in gpu8)


def test_the_sidebar_model_of_1000_nodes_is_a_summary_with_detail_on_demand() -> None:
    snapshot = many_deployments_cluster(1000, seed=1)
    model = cluster_model(snapshot, "127.0.0.1:6379")
    size = len(json.dumps(model))
    assert size < 200_000, size
    assert model["nodes"] == [] and sum(len(g["cells"]) for g in model["overview"]["groups"]) == len(snapshot.nodes)
    assert model["holders"] == [*overview(snapshot).shown, OTHERS]  # 42 deployments: 34 drawn together
    assert set(model["colours"]) >= {f"{d.app}/{d.name}" for d in snapshot.deployments}
    detail = cluster_model(snapshot, "127.0.0.1:6379", group="gpu4")
    assert len(detail["nodes"]) == DETAIL_NODES and {n["type"] for n in detail["nodes"]} == {"gpu4"}
    assert detail["overview"]["group"] == "gpu4"
    # A small cluster keeps a card per node and no overview.
    small = cluster_model(fragmented_cluster(10, seed=1), "127.0.0.1:6379")
    assert small["overview"] is None and len(small["nodes"]) == 11


def test_a_large_clusters_text_summary_has_a_line_per_type_not_per_node(large: Snapshot) -> None:
    lines = snapshot_text(large).splitlines()
    types = {n.type for n in large.nodes}
    assert len(lines) == 1 + len(types) + len(large.deployments)
    for kind in types:
        count = sum(1 for n in large.nodes if n.type == kind)
        assert any(line.startswith(f"  {kind} | {count} | ") for line in lines)
