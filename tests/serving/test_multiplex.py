"""Multiplexed deployments: many models on few replicas, each streamed on a miss, LRU out, counted."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from servelab import serving
from servelab.errors import DeploymentError, ModelNotFoundError
from servelab.serving import ModelCount, Snapshot
from servelab.serving.multiplex import HEADER, check_template, model_uri
from servelab.testing import NginxServer
from servelab.testing.apps import WeightsSummary
from tests.serving.conftest import reset

MODELS = [f"m{i}" for i in range(5)]
TRACE = ["m0", "m1", "m0", "m2", "m3", "m0", "m1", "m4", "m4", "m2", "m0", "m3"]
LIMIT = 2


def lru_counts(trace: list[str], limit: int) -> tuple[dict[str, tuple[int, int, int]], set[str]]:
    """(requests, misses, evictions) per model of one replica keeping ``limit`` models, least recent
    out, and the models it holds at the end."""
    held: OrderedDict[str, None] = OrderedDict()
    counts = {m: [0, 0, 0] for m in trace}
    for model in trace:
        counts[model][0] += 1
        if model in held:
            held.move_to_end(model)
            continue
        counts[model][1] += 1
        if len(held) >= limit:
            evicted, _ = held.popitem(last=False)
            counts[evicted][2] += 1
        held[model] = None
    return {m: (r, miss, ev) for m, (r, miss, ev) in counts.items()}, set(held)


def loaded() -> set[str]:
    (replica,) = serving.snapshot().replicas
    return {c.model_id for c in replica.models if c.loaded}


def ask(url: str, model_id: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={HEADER: model_id} if model_id is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_templates_and_model_ids_are_checked_before_anything_runs() -> None:
    check_template("ok", "s3://b/{model_id}/model.safetensors", 2)
    for template in ("s3://b/model.safetensors", "s3://b/{model}/x", "s3://b/{model_id}/{model_id}", None):
        with pytest.raises(DeploymentError, match="one \\{model_id\\} field"):
            check_template("bad", template, 2)
    with pytest.raises(DeploymentError, match="positive integer"):
        check_template("bad", "s3://b/{model_id}", 0)
    assert model_uri("http://h/{model_id}/w.safetensors", "m-7.v2") == "http://h/m-7.v2/w.safetensors"
    for bad in ("", "../secrets", "a/b", ".hidden"):
        with pytest.raises(ModelNotFoundError, match="not a plain name"):
            model_uri("http://h/{model_id}", bad)


def test_model_counts_travel_in_snapshot_json() -> None:
    replica = serving.Replica("r", "d", "app", "n", {"CPU": 1.0}, models=(ModelCount("m0", requests=3, misses=1, loaded=True),))
    snap = Snapshot((), (replica,))
    again = Snapshot.from_json(snap.to_json())
    assert again.replicas[0].models == replica.models and again.replicas[0].models[0].hits == 2


def test_a_multiplexed_deployment_serves_more_models_than_a_replica_holds(
    cluster: str, served_dir: Path, nginx: NginxServer
) -> None:
    reset(cluster)
    expected = {}
    for seed, model in enumerate(MODELS):
        weights = {"w": torch.randn(2000, generator=torch.Generator().manual_seed(seed))}
        (served_dir / "mux" / model).mkdir(parents=True, exist_ok=True)
        save_file(weights, served_dir / "mux" / model / "model.safetensors")
        expected[model] = float(weights["w"].double().sum())
    template = nginx.url("mux/{model_id}/model.safetensors")
    serving.deploy("mux", WeightsSummary, replicas=1, gpus=0.5, multiplex=template, max_models_per_replica=LIMIT)
    url = serving.url("mux")

    for model in TRACE:  # one replica, requests one after another: the LRU's behaviour is exact
        status, answer = ask(url, model)
        assert status == 200 and answer["checksum"] == pytest.approx(expected[model])
    through_handle = serving.handle("mux").options(multiplexed_model_id="m3").remote().result()
    assert through_handle["checksum"] == pytest.approx(expected["m3"])

    # Unknown, malformed and missing model ids get a clear answer, evict nothing, and the replica keeps serving.
    replica_before = serving.snapshot().replicas[0].id
    status, answer = ask(url, "m99")
    assert status == 404 and "m99" in answer["error"] and "cannot be loaded" in answer["error"]
    assert ask(url, "..%2Fetc")[0] == 404 and "plain name" in ask(url, "a/b")[1]["error"]
    status, answer = ask(url, None)  # a GET naming no model: what the deployment serves, and how to ask
    assert status == 200 and HEADER in answer["ask"] and answer["template"] == template
    with pytest.raises(Exception, match=HEADER):
        serving.handle("mux").remote().result()
    with pytest.raises(Exception, match="m98"):
        serving.handle("mux").options(multiplexed_model_id="m98").remote().result()
    assert loaded() == lru_counts([*TRACE, "m3"], LIMIT)[1]  # (Serve evicts before it loads)
    assert ask(url, "m1")[0] == 200

    lru, held = lru_counts([*TRACE, "m3", "m1"], LIMIT)
    deadline = time.monotonic() + 15
    while True:  # hits are reported at most once a second
        snap = serving.snapshot()
        (replica,) = snap.replicas
        counts = {c.model_id: c for c in replica.models}
        seen = {m: (c.requests, c.misses, c.evictions) for m, c in counts.items() if m in lru}
        if seen == lru or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert seen == lru
    assert replica.id == replica_before and serving.deployments()[0].healthy
    assert {c.model_id for c in replica.models if c.loaded} == held == {"m3", "m1"}
    assert counts["m0"].hits == lru["m0"][0] - lru["m0"][1] > 0
    assert all(c.load_s > 0 and c.nbytes == 2000 * 4 * c.misses for m, c in counts.items() if m in lru)
    assert counts["m99"].errors == 1 and counts["m98"].errors == 1 and counts["m99"].requests == 0
