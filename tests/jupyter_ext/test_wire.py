"""The JSON the server sends has every field the sidebar's api.ts declares, of the declared kind
(pure: models built from synthetic clusters; test_api checks the real answers the same way)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

from servelab.jupyter_ext.manager import Compaction
from servelab.jupyter_ext.model import cluster_model, plan_model
from servelab.serving import AutoPolicy, AutoStatus, Budget, CompactionEvent, CompactionReport, LatencyStats, plan
from servelab.testing.clusters import fragmented_cluster, many_deployments_cluster
from tests.jupyter_ext.wire import check, declared_types, drift


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def served(model: dict[str, Any]) -> Any:
    """The driver's model as the manager serves it: with what only the server knows added."""
    return as_json({**model, "compaction": None, "refresh_interval_s": 2.0})


def test_a_large_clusters_model_matches_api_ts_with_and_without_a_picked_type() -> None:
    snap = many_deployments_cluster(60, seed=2)
    for group in (None, "gpu8"):
        model = served(cluster_model(snap, "127.0.0.1:6379", group=group))
        assert model["overview"] is not None and drift(model, "ClusterModel") == []


def test_the_cluster_plan_and_compaction_models_match_api_ts() -> None:
    snap = fragmented_cluster(12, seed=3)
    snap = replace(snap, nodes=(snap.nodes[0], replace(snap.nodes[1], draining=True), *snap.nodes[2:]))
    auto = AutoStatus(asdict(AutoPolicy()), "waiting", 12.0, 0, 0, 0, 0, "", ())
    assert drift(served(cluster_model(snap, "127.0.0.1:6379", auto)), "ClusterModel") == []
    made = plan(snap, budget=Budget(max_draining=2))
    assert drift(as_json({**plan_model(made, snap), "address": "127.0.0.1:6379"}), "PlanModel") == []  # kept by address
    event = CompactionEvent("draining", made.nodes_to_free[0], "draining ...", 1.5, 0, 1)
    report = CompactionReport(
        made, False, made.nodes_to_free, len(made.moves), 9.0, False, "", (event,), during=LatencyStats(10, 0, 5.0, 9.0)
    )
    compaction = Compaction("c1", "127.0.0.1:6379", made.to_dict(), {"max_draining": 2})
    compaction.add_event(event.to_dict())
    compaction.finish("done", report.to_dict())
    assert drift(as_json(compaction.to_dict()), "CompactionModel") == []


def test_a_renamed_or_retyped_field_is_caught() -> None:
    snap = fragmented_cluster(6, seed=1)
    model = served(cluster_model(snap, "127.0.0.1:6379"))
    renamed = {**model, "header": {("price" if k == "pricing" else k): v for k, v in model["header"].items()}}
    assert drift(renamed, "ClusterModel") == ["$.header.pricing: missing (declared in api.ts)"]
    retyped = {**model, "nodes": [{**model["nodes"][0], "draining": "no"}]}
    assert drift(retyped, "ClusterModel") == ["$.nodes[0].draining: expected boolean, got str"]
    types = declared_types("export interface T {\n  state: 'a' | 'b';\n  n?: number | null; // a comment\n}\n")
    assert check({"state": "a"}, "T", types) == [] and check({"state": "c", "n": 1}, "T", types) != []
