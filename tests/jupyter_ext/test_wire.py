"""The REST API's types are declared once (jupyter_ext/schema.py) and the sidebar's TypeScript is
generated from them; the JSON the server sends has every field they declare, of the declared kind
(pure: models built from synthetic clusters; test_api checks the real answers the same way)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any, is_typeddict

from servelab.jupyter_ext import schema
from servelab.jupyter_ext.manager import Compaction
from servelab.jupyter_ext.model import cluster_model, event_model, plan_model, report_model
from servelab.serving import AutoPolicy, AutoStatus, Budget, CompactionEvent, CompactionReport, LatencyStats, plan
from servelab.testing.clusters import fragmented_cluster, many_deployments_cluster
from tests.jupyter_ext.wire import SCHEMA_TS, check, declared_types, drift


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def served(model: dict[str, Any]) -> Any:
    """The driver's model as the manager serves it: with what only the server knows added."""
    return as_json({**model, "compaction": None, "refresh_interval_s": 2.0})


def test_a_large_clusters_model_matches_its_declaration_with_and_without_a_picked_type() -> None:
    snap = many_deployments_cluster(60, seed=2)
    for group in (None, "gpu8"):
        model = served(cluster_model(snap, "127.0.0.1:6379", group=group))
        assert model["overview"] is not None and drift(model, "ClusterModel") == []


def test_the_cluster_plan_and_compaction_models_match_their_declarations() -> None:
    snap = fragmented_cluster(12, seed=3)
    snap = replace(snap, nodes=(snap.nodes[0], replace(snap.nodes[1], draining=True), *snap.nodes[2:]))
    auto = AutoStatus(asdict(AutoPolicy()), "waiting", 12.0, 0, 0, 0, 0, "", ())
    assert drift(served(cluster_model(snap, "127.0.0.1:6379", auto)), "ClusterModel") == []
    made = plan(snap, budget=Budget(max_draining=2))
    assert drift(as_json(plan_model(made, snap, "127.0.0.1:6379")), "PlanModel") == []
    event = CompactionEvent("draining", made.nodes_to_free[0], "draining ...", 1.5, 0, 1)
    report = CompactionReport(
        made,
        False,
        made.nodes_to_free,
        len(made.moves),
        9.0,
        False,
        "",
        (event,),
        during=LatencyStats(10, 0, 5.0, 9.0),
        terminated=((made.nodes_to_free[0], 31.5),),
    )
    compaction = Compaction("c1", "127.0.0.1:6379", plan_model(made, snap, "127.0.0.1:6379"), {"max_draining": 2})
    compaction.add_event(event_model(event))
    compaction.finish("done", report_model(report))
    assert drift(as_json(compaction.to_dict()), "CompactionModel") == []


def test_a_renamed_or_retyped_field_is_caught() -> None:
    snap = fragmented_cluster(6, seed=1)
    model = served(cluster_model(snap, "127.0.0.1:6379"))
    renamed = {**model, "header": {("price" if k == "pricing" else k): v for k, v in model["header"].items()}}
    assert drift(renamed, "ClusterModel") == ["$.header.pricing: missing (declared in schema.ts)"]
    retyped = {**model, "nodes": [{**model["nodes"][0], "draining": "no"}]}
    assert drift(retyped, "ClusterModel") == ["$.nodes[0].draining: expected boolean, got str"]
    types = declared_types("export interface T {\n  state: 'a' | 'b';\n  n?: number | null; // a comment\n}\n")
    assert check({"state": "a"}, "T", types) == [] and check({"state": "c", "n": 1}, "T", types) != []
    assert check([["n1", 2.5]], "[string, number][]", types) == [] and check([["n1", "x"]], "[string, number][]", types) != []


def test_the_sidebars_types_are_generated_from_the_python_declaration() -> None:
    # The build writes schema.ts from schema.py (setup.py's build_labextension); committed, they agree.
    assert SCHEMA_TS.read_text() == schema.typescript(), "run: python jupyter_ext/schema.py > jupyter_ext/src/schema.ts"
    declared = declared_types()
    python = {name for name, value in vars(schema).items() if isinstance(value, type) and is_typeddict(value)}
    assert set(declared) == python and f"export const API_VERSION = {schema.API_VERSION};" in SCHEMA_TS.read_text()
    budget = declared["Budget"]
    assert "max_draining?: number;" in budget and "max_migrating?: number | null;" in budget  # NotRequired: optional
    assert "terminated: [string, number][];" in declared["ReportModel"]  # tuples as TypeScript tuples
