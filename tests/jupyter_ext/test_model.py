"""The sidebar's JSON model and the API's input checks: pure, on synthetic clusters, no Ray."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from servelab.jupyter_ext.handlers import compaction_budget, planning_options
from servelab.jupyter_ext.manager import ApiError
from servelab.jupyter_ext.model import cluster_model, plan_model, plan_of, run_budget
from servelab.serving import Budget, CacheEntry, Snapshot, fragmentation, plan
from servelab.testing.clusters import fragmented_cluster
from servelab.widgets.model import node_label
from servelab.widgets.summary import plan_aim


def test_cluster_model_is_json_and_accounts_for_every_node_and_replica() -> None:
    snap = fragmented_cluster(10, seed=1)
    model = json.loads(json.dumps(cluster_model(snap, "10.0.0.2:6379")))
    assert model["address"] == "10.0.0.2:6379" and model["fingerprint"] == snap.fingerprint()
    assert len(model["nodes"]) == len(snap.nodes) and model["nodes"][0]["head"]
    assert sum(n["replicas"] for n in model["nodes"]) == len(snap.replicas)
    frag = fragmentation(snap)
    assert model["header"]["nodes_in_use"] == frag.nodes_in_use == sum(n["in_use"] for n in model["nodes"])
    assert model["header"]["lower_bound"] == frag.lower_bound
    for node in model["nodes"]:
        for resource, bar in node["bars"].items():
            assert sum(s["fraction"] for s in bar) == pytest.approx(1.0)
            held = sum(s["amount"] for s in bar if "/" in s["holder"])
            on_node = sum(r.resources.get(resource, 0.0) for r in snap.replicas_on(node["id"]))
            assert held == pytest.approx(on_node)


def test_a_plan_survives_its_trip_through_json() -> None:
    snap = fragmented_cluster(10, seed=0)
    made = plan(snap, budget=Budget(max_draining=3, min_saving_per_move=0.5))
    model = json.loads(json.dumps(plan_model(made, snap, "10.0.0.2:6379")))
    named = {*made.nodes_to_free, *made.blocked, *(m.source for m in made.moves), *(m.target for m in made.moves)}
    assert set(model["labels"]) == named and made.moves  # a label for each node it names, only those
    assert model["aim"] == plan_aim(made)
    assert plan_of(model) == made  # its budget too


def test_the_sidebars_compaction_runs_the_plans_own_budget_with_what_it_chose_in_place() -> None:
    made = plan(fragmented_cluster(10, seed=0), budget=Budget(max_draining=3, max_migrating=1, min_saving_per_move=0.5))
    # The sidebar sends its draining choice alone: the plan's other limits stay (Budget(**{}) lost them).
    assert run_budget(made, {"max_draining": 2}) == Budget(max_draining=2, max_migrating=1, min_saving_per_move=0.5)
    assert run_budget(made, {}) == run_budget(made, None) == made.budget


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"objective": "speed"}, "'nodes'"),
        ({"max_moves": True}, "non-negative integer"),
        ({"max_moves": 1.5}, "non-negative integer"),
        ({"keep": [1]}, "list of node ids"),
        ({"budget": 2}, "unknown field"),
    ],
)
def test_planning_options_name_the_fix(body: dict[str, object], says: str) -> None:
    with pytest.raises(ApiError) as raised:
        planning_options(body)
    assert raised.value.status == 400 and says in raised.value.message


def test_planning_options_defaults() -> None:
    assert planning_options({}) == {"objective": "nodes", "keep": []}
    assert planning_options({"objective": "cost", "max_moves": 3, "keep": ["n1"]}) == {
        "objective": "cost",
        "max_moves": 3,
        "keep": ["n1"],
    }


def test_the_model_says_who_drains_a_node_and_what_automatic_compaction_does() -> None:
    from dataclasses import asdict, replace

    from servelab.serving import AutoPolicy, AutoStatus

    snap = fragmented_cluster(4, seed=0)
    worker = next(n for n in snap.nodes if not n.head)
    nodes = tuple(replace(n, draining=True, drained_by="ray") if n.id == worker.id else n for n in snap.nodes)
    drained = replace(snap, nodes=nodes)
    assert cluster_model(drained, "a:1")["autocompact"] is None  # off
    auto = AutoStatus(asdict(AutoPolicy(delay_s=120)), "waiting", 30.0, 2, 3, 5, 5, "nothing worth moving", ())
    model = json.loads(json.dumps(cluster_model(drained, "a:1", auto)))
    assert {n["id"]: n["drained_by"] for n in model["nodes"] if n["draining"]} == {worker.id: "ray"}
    assert model["header"]["draining"] == 1
    assert model["autocompact"] == {
        "state": "waiting",
        "delay_s": 120,
        "stable_for_s": 30.0,
        "compactions": 2,
        "nodes_freed": 3,
        "last_reason": "nothing worth moving",
    }


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (2, "an object with any of max_draining"),
        ({"max_drain": 2}, "an object with any of max_draining"),
        ({"max_draining": 0}, "positive integer"),
        ({"max_migrating": 1.5}, "positive integer or None"),
        ({"min_saving_per_move": "0.1"}, "budget:"),
    ],
)
def test_a_bad_compaction_budget_names_the_fix(given: object, says: str) -> None:
    with pytest.raises(ApiError) as raised:
        compaction_budget(given)
    assert raised.value.status == 400 and raised.value.kind == "bad-budget" and says in raised.value.message


def test_a_compaction_budget_is_budgets_fields() -> None:
    assert compaction_budget(None) == {}
    assert compaction_budget({"max_draining": 2}) == {"max_draining": 2}  # checked; the rest keeps Budget's defaults


def test_the_model_says_what_the_weight_cache_holds_on_each_node() -> None:
    snap = fragmented_cluster(10, seed=1)
    worker = snap.workers[0]
    cached = (
        CacheEntry("s3://m/a.safetensors", 2_000, 3, "r1", 1.0, 2.0, worker.id),
        CacheEntry("s3://m/b.safetensors", 500, 0, "r2", 1.0, 2.0, worker.id),
        CacheEntry("s3://m/c.safetensors", 100, 1, "r3", 1.0, 2.0, "a-node-that-left"),
    )
    snap = replace(snap, weight_cache=cached)
    model = json.loads(json.dumps(cluster_model(snap, "10.0.0.2:6379")))
    assert {n["id"]: n["cached_bytes"] for n in model["nodes"] if n["cached_bytes"]} == {worker.id: 2_500}
    assert [(e["uri"], e["reads"], e["node_label"]) for e in model["weight_cache"]] == [
        ("s3://m/a.safetensors", 3, node_label(worker)),
        ("s3://m/b.safetensors", 0, node_label(worker)),
        ("s3://m/c.safetensors", 1, "a-node-t"),
    ]
    assert Snapshot.from_json(snap.to_json()) == snap  # the cache travels with a snapshot


def test_cluster_model_says_what_the_gpus_really_are() -> None:
    from servelab.serving.gpu_metrics import GpuReading
    from servelab.serving.gpus import LOGICAL, LOGICAL_NOTE, PHYSICAL

    snap = fragmented_cluster(4, seed=2)
    assert cluster_model(snap, "a:1")["header"]["gpus"] == ""  # a cluster servelab did not start: no claim either way
    logical = cluster_model(replace(snap, gpu_mode=LOGICAL), "a:1")
    assert logical["header"]["gpus"] == LOGICAL_NOTE
    reading = GpuReading(0, "NVIDIA H200", 2 << 30, 141 << 30, 12.0, snap.nodes[1].id)
    physical = cluster_model(replace(snap, gpu_mode=PHYSICAL, gpus=(reading,)), "a:1")
    assert physical["header"]["gpus"].startswith("1 x NVIDIA H200 (physical): 2.15 GB of 151 GB used, 12% busy")
