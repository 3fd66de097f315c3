"""Every route of the server extension against a real Jupyter server and a real embedded cluster."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from servelab import serving
from servelab.jupyter_ext.schema import API_VERSION
from servelab.serving import discovery
from servelab.testing import ClusterProcess, free_port
from tests.jupyter_ext.conftest import SLOW
from tests.jupyter_ext.wire import drift

pytestmark = pytest.mark.slow
ROUTES = [
    ("GET", ("clusters",)),
    ("GET", ("cluster",)),
    ("POST", ("plans",)),
    ("POST", ("compactions",)),
    ("GET", ("compactions", "0123abcd")),
    ("GET", ("compactions", "0123abcd", "events")),
    ("POST", ("deployments", "a", "scale")),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_anonymous_requests_are_refused(jp_fetch: Any, api: Any, method: str, path: tuple[str, ...]) -> None:
    response = await jp_fetch(
        "servelab", "api", *path, method=method, body="{}" if method == "POST" else None,
        headers={"Authorization": "token not-the-token"}, raise_error=False,
    )  # fmt: skip
    assert response.code == 403


async def test_clusters_lists_the_configured_and_the_discovered_cluster(api: Any, cluster: str, jp_runtime_dir: Path) -> None:
    record = discovery.write_record(cluster, None, None, embedded=True)  # what up() writes, in this server's runtime dir
    try:
        code, answer = await api("GET", "clusters")
    finally:
        discovery.remove_record(record)
    assert code == 200
    assert answer["refresh_interval_s"] == 2.0
    (entry,) = answer["clusters"]  # one cluster, found twice: listed once
    assert entry["address"] == cluster and entry["source"] == "configured" and entry["reachable"] is True
    assert drift(answer, "ClusterListing") == []  # what schema.ts declares, field by field
    assert answer["api_version"] == API_VERSION  # the sidebar built beside this server speaks it


async def test_cluster_model_shows_nodes_deployments_and_fragmentation(api: Any, fragmented: serving.Snapshot) -> None:
    code, model = await api("GET", "cluster")
    assert code == 200 and drift(model, "ClusterModel") == []
    workers = [n for n in model["nodes"] if not n["head"]]
    assert len(workers) == 3 and model["nodes"][0]["head"]
    assert {(d["name"], d["status"], d["running_replicas"], d["target_replicas"]) for d in model["deployments"]} == {
        ("a", "HEALTHY", 2, 2),
        ("b", "HEALTHY", 2, 2),
    }
    assert model["header"]["nodes_in_use"] == 2 and model["header"]["lower_bound"] == 1
    assert model["fragmentation"]["score"] == 0.5
    for node in workers:  # each resource bar accounts for the node's whole capacity
        for bar in node["bars"].values():
            assert sum(s["fraction"] for s in bar) == pytest.approx(1.0)
    held = {s["holder"] for n in workers for s in n["bars"]["GPU"]}
    assert {"a/a", "b/b"} <= held
    assert model["fingerprint"] == serving.snapshot().fingerprint()


BAD_BODIES = [
    ("plans", "not json", "not JSON"),
    ("plans", "[1, 2]", "JSON object"),
    ("plans", {"objective": "fast"}, "'nodes'"),
    ("plans", {"max_moves": -1}, "non-negative integer"),
    ("plans", {"keep": "node-1"}, "list of node ids"),
    ("plans", {"objetive": "cost"}, "unknown field"),
    ("plans", {"address": "not an address"}, "host:port"),
    ("plans", {"keep": ["no-such-node"]}, "unknown node"),
    ("compactions", {"plan": 7}, "fingerprint"),
    ("compactions", {"budget": {"max_draining": -1}}, "positive integer"),
    ("deployments/a/scale", {"replicas": "two"}, "non-negative integer"),
    ("deployments/a/scale", {}, "non-negative integer"),
    ("deployments/a/scale", {"replicas": -1}, "non-negative integer"),
]


@pytest.mark.parametrize(("path", "body", "says"), BAD_BODIES)
async def test_bad_input_gets_400_with_a_message_naming_the_fix(api: Any, path: str, body: Any, says: str) -> None:
    code, answer = await api("POST", *path.split("/"), body=body)
    assert code == 400, answer
    assert says in answer["message"] and answer["status"]


async def test_unknown_names_get_404(api: Any, fragmented: Any) -> None:
    code, answer = await api("POST", "deployments", "ghost", "scale", body={"replicas": 1})
    assert code == 404 and "no deployment named 'ghost'" in answer["message"] and "a, b" in answer["message"]
    code, answer = await api("GET", "compactions", "0123abcd")
    assert code == 404 and "no compaction" in answer["message"]
    code, answer = await api("GET", "compactions", "0123abcd", "events")
    assert code == 404
    code, answer = await api("POST", "compactions", body={"plan": "feedface"})
    assert code == 404 and "POST /servelab/api/plans" in answer["message"]


async def test_scale_changes_the_target(api: Any, fragmented: Any) -> None:
    code, answer = await api("POST", "deployments", "a", "scale", body={"replicas": 3})
    assert code == 202 and answer["target_replicas"] == 3
    serving.wait_healthy()
    code, model = await api("GET", "cluster")
    assert {d["name"]: d["running_replicas"] for d in model["deployments"]} == {"a": 3, "b": 2}


async def test_a_compaction_runs_and_its_events_are_observable_while_it_runs(
    api: Any, jp_fetch: Any, fragmented: serving.Snapshot
) -> None:
    code, plan = await api("POST", "plans", body={"objective": "nodes"})
    assert code == 201 and len(plan["nodes_to_free"]) == 1 and len(plan["moves"]) == 2
    assert drift(plan, "PlanModel") == []
    assert set(plan["labels"]) >= set(plan["nodes_to_free"])
    code, refused = await api("POST", "compactions", body={"plan": plan["fingerprint"], "budget": {"min_saving_per_move": 1000}})
    assert code == 202 and refused["budget"]["min_saving_per_move"] == 1000
    while refused["state"] == "running":
        await asyncio.sleep(0.2)
        code, refused = await api("GET", "compactions", refused["id"])
    assert refused["state"] == "done" and "not worth it" in refused["report"]["reason"]  # the worth-it rule: nothing moved
    assert refused["report"]["nodes_freed"] == [] and refused["report"]["budget"]["min_saving_per_move"] == 1000
    # The server's driver attached to a cluster no autoscaler serves: the plan warns, and a compaction
    # the user did not confirm is refused before anything drains.
    warning = plan["unowned_warning"]
    assert (
        warning.startswith("no autoscaler serves this cluster: compacting drains 1 node(s) (")
        and "machines keep running" in warning
    )
    code, unconfirmed = await api("POST", "compactions", body={"plan": plan["fingerprint"], "budget": {"max_draining": 2}})
    assert code == 202
    while unconfirmed["state"] == "running":
        await asyncio.sleep(0.2)
        code, unconfirmed = await api("GET", "compactions", unconfirmed["id"])
    assert unconfirmed["state"] == "failed" and unconfirmed["events"] == []
    assert unconfirmed["error"] == warning + " Nothing was changed. To go ahead, press Compact and confirm."
    assert serving.snapshot().fingerprint() == plan["fingerprint"]  # nothing drained
    code, bad = await api("POST", "compactions", body={"plan": plan["fingerprint"], "release_unowned_nodes": "yes"})
    assert code == 400 and bad["status"] == "bad-release"
    code, started = await api(
        "POST", "compactions", body={"plan": plan["fingerprint"], "budget": {"max_draining": 2}, "release_unowned_nodes": True}
    )
    assert code == 202 and started["state"] == "running"
    compaction = started["id"]

    chunks: list[bytes] = []
    stream = asyncio.ensure_future(
        jp_fetch(
            "servelab", "api", "compactions", compaction, "events", streaming_callback=chunks.append, request_timeout=SLOW * 2
        )
    )
    seen_while_running: list[str] = []
    deadline = time.monotonic() + SLOW * 2
    while time.monotonic() < deadline:
        code, state = await api("GET", "compactions", compaction)
        assert code == 200
        if state["state"] != "running":
            break
        seen_while_running = [e["kind"] for e in state["events"]]
        code, busy = await api("POST", "compactions", body={"plan": plan["fingerprint"]})
        if code == 202:  # it ended between the two requests; its plan, now stale, is refused and changes nothing
            code, state = await api("GET", "compactions", compaction)
            assert state["state"] != "running"
            continue
        assert code == 409 and compaction in busy["message"]  # one compaction per cluster at a time
        await asyncio.sleep(0.5)
    assert state["state"] == "done", state
    assert drift(state, "CompactionModel") == []
    assert state["budget"]["max_draining"] == 2 and state["report"]["budget"]["max_draining"] == 2
    assert "draining" in seen_while_running  # events arrive while it runs, not only at the end
    assert state["report"]["nodes_freed"] == plan["nodes_to_free"] and state["report"]["replicas_moved"] == 2
    assert [e["kind"] for e in state["events"]] == ["planned", "draining", "migrated", "released", "done"]

    await stream
    text = b"".join(chunks).decode()
    events = [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]
    assert [e["kind"] for e in events[:-1]] == ["planned", "draining", "migrated", "released", "done"]
    assert events[-1]["state"] == "done" and "event: end" in text
    assert all(drift(event, "CompactionEvent") == [] for event in events[:-1])

    code, model = await api("GET", "cluster")
    assert model["header"]["nodes_in_use"] == 1 and model["compaction"] is None
    code, stale = await api("POST", "compactions", body={"plan": plan["fingerprint"]})
    assert code == 202
    while stale["state"] == "running":
        await asyncio.sleep(0.5)
        code, stale = await api("GET", "compactions", stale["id"])
    assert stale["state"] == "failed" and "changed since this plan was made" in stale["error"]
    assert "press Plan again" in stale["error"]  # the sidebar's words, not plan(snapshot())


async def test_without_a_cluster_the_routes_say_so_and_the_server_stays_up(
    jp_fetch: Any, api: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    jp_serverapp.web_app.settings["servelab_manager"].settings.address = ""
    code, answer = await api("GET", "clusters")
    assert code == 200 and answer["clusters"] == []
    code, answer = await api("GET", "cluster")
    assert code == 404 and answer["status"] == "no-cluster" and "%servelab up" in answer["message"]
    code, answer = await api("POST", "plans", body={})
    assert code == 404 and answer["status"] == "no-cluster"

    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, answer = await api("GET", "cluster", params={"address": dead})
    assert code == 503 and answer["status"] == "unreachable" and dead in answer["message"]
    jp_serverapp.web_app.settings["servelab_manager"].settings.address = dead
    code, answer = await api("GET", "clusters")
    assert answer["clusters"] == [
        {"address": dead, "source": "configured", "record": None, "reachable": False, "attached": False}
    ]
    assert (await jp_fetch("api", "status")).code == 200


async def test_a_cluster_that_goes_away_midway_gets_a_clear_status(jp_fetch: Any, api: Any, jp_runtime_dir: Path) -> None:
    with ClusterProcess(nodes=1) as other:  # another kernel's cluster, found through its discovery record
        code, answer = await api("GET", "clusters")
        found = {c["address"]: c for c in answer["clusters"]}
        assert found[other.address]["source"] == "discovered" and found[other.address]["reachable"]
        code, model = await api("GET", "cluster", params={"address": other.address})
        assert code == 200 and len(model["nodes"]) == 2
    # its owner stopped: the cluster is gone, the driver attached to it too
    started = time.monotonic()
    code, answer = await api("GET", "cluster", params={"address": other.address})
    assert code == 503 and answer["status"] == "unreachable" and other.address in answer["message"]
    assert time.monotonic() - started < 10  # said at once, not after Ray's own timeouts
    code, answer = await api("GET", "clusters")
    assert other.address not in {c["address"] for c in answer["clusters"]}  # its record went with its process
    assert (await jp_fetch("api", "status")).code == 200


async def test_without_ray_the_extension_answers_with_a_clear_status(
    api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    monkeypatch.setenv("PYTHONPATH", f"{shadow.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    code, answer = await api("GET", "cluster")
    assert code == 503 and answer["status"] == "ray-missing" and "pip install 'ray[serve]'" in answer["message"]
    code, answer = await api("GET", "clusters")
    assert code == 200 and answer["clusters"][0]["reachable"] is True
