"""The peer weight cache on the embedded cluster: one remote read, later replicas load from peers."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from servelab import serving
from servelab.serving import ray_adapter
from servelab.serving.weight_cache import HOLDER, release_node
from servelab.testing import NginxServer
from servelab.testing.apps import WeightsDigest, state_digest
from tests.serving.conftest import reset

NAME = "peer-cache.safetensors"


def answers(url: str, replicas: int) -> dict[str, str]:
    """Digest by replica, asking until every replica has answered."""
    seen: dict[str, str] = {}
    for _ in range(40 * replicas):
        with urllib.request.urlopen(url, timeout=30) as response:
            answer = json.loads(response.read())
        seen[answer["replica"]] = answer["digest"]
        if len(seen) == replicas:
            break
    return seen


def sources(name: str) -> dict[str, str]:
    return {t.replica: t.source for t in serving.replica_timelines(name)}


def test_replicas_after_the_first_load_from_peers_and_one_reads_for_many(
    cluster: str, served_dir: Path, nginx: NginxServer
) -> None:
    reset(cluster)
    path = served_dir / NAME
    generator = torch.Generator().manual_seed(7)
    save_file({"w": torch.randn(512, 1024, generator=generator), "b": torch.ones(64, dtype=torch.bfloat16)}, path)
    expected = state_digest(load_file(path))
    nbytes = 512 * 1024 * 4 + 64 * 2

    serving.deploy("peer", WeightsDigest, replicas=1, gpus=0.5, weights=nginx.url(NAME))
    deployed = nginx.bytes_served(NAME)  # deploy() reads the headers, the replica streams the tensors
    assert deployed >= nbytes
    (entry,) = serving.weight_cache()
    assert (entry.uri, entry.nbytes, entry.reads) == (nginx.url(NAME), nbytes, 0)
    snap = serving.snapshot()  # the full read shows it too, on the node that holds it
    assert snap.weight_cache == (entry,) and snap.cached_on(entry.node) == nbytes
    assert entry.node in {r.node_id for r in snap.replicas_on(entry.node)}

    serving.scale("peer", 2)  # a replica scaled up later: from the peer cache, identical, no remote read
    serving.wait_healthy()
    assert sorted(sources("peer").values()) == ["peer", "remote"]
    assert set(answers(serving.url("peer"), 2).values()) == {expected}
    assert nginx.bytes_served(NAME) == deployed and serving.weight_cache()[0].reads == 1
    peer = next(t for t in serving.replica_timelines("peer") if t.source == "peer")
    assert peer.nbytes == nbytes and peer.constructed is not None and peer.constructed >= peer.weights_done
    assert peer.scheduled is not None and peer.scheduled <= peer.constructing <= peer.weights_started <= peer.weights_done
    assert peer.node_ready is None  # its node was up before Serve created it: no wait for a launch

    assert serving.evict_weights() == 1 and serving.weight_cache() == []
    serving.scale("peer", 3)  # the cached copy is gone: back to the source
    serving.wait_healthy()
    assert sorted(sources("peer").values()) == ["peer", "remote", "remote"]
    one_read = nginx.bytes_served(NAME) - deployed
    assert nbytes <= one_read <= deployed  # one stream: the tensors and a header probe

    serving.evict_weights()
    serving.scale("peer", 6)  # three at once: one remote read, the other two wait for its bytes
    serving.wait_healthy()
    assert sorted(sources("peer").values()) == ["peer"] * 3 + ["remote"] * 3
    assert nginx.bytes_served(NAME) == deployed + 2 * one_read
    assert set(answers(serving.url("peer"), 6).values()) == {expected}
    first_answered = [t for t in serving.replica_timelines("peer") if t.first_request is not None]
    assert len(first_answered) == 6 and all(t.first_request >= t.constructed for t in first_answered)


def test_a_node_compaction_frees_hands_its_cached_weights_to_a_node_that_stays(
    cluster: str, served_dir: Path, nginx: NginxServer
) -> None:
    # Cached bytes are primary copies in the node's object store: left there, an autoscaler never sees
    # the node idle; dropped, the next replica reads remote storage again. They move instead.
    reset(cluster)
    for name in ("a", "b"):  # each fills a node of its own, whose holder keeps its checkpoint
        save_file({"w": torch.full((1024,), float(ord(name)))}, served_dir / f"{name}.safetensors")
        serving.deploy(name, WeightsDigest, replicas=4, gpus=0.5, weights=nginx.url(f"{name}.safetensors"))
    for name in ("a", "b"):
        serving.scale(name, 1)
    serving.wait_healthy()
    held = {entry.uri: entry.node for entry in serving.weight_cache()}
    plan = serving.plan(serving.snapshot())
    assert len(set(held.values())) == 2 and len(plan.nodes_to_free) == 1 and set(plan.nodes_to_free) < set(held.values())

    report = serving.compact(plan)
    assert not report.stopped, report.reason
    (freed,) = report.nodes_freed
    (stays,) = set(held.values()) - {freed}
    assert {entry.uri: entry.node for entry in serving.weight_cache()} == dict.fromkeys(held, stays)
    assert ray_adapter.named_actor(HOLDER + freed) is None

    (moved,) = [uri for uri, node in held.items() if node == freed]
    name = moved.rsplit("/", 1)[1].removesuffix(".safetensors")
    served = nginx.bytes_served(f"{name}.safetensors")
    started = set(sources(name))
    serving.scale(name, 2)  # a replica after the compaction: still from the cache, identical
    serving.wait_healthy()
    assert [source for replica, source in sources(name).items() if replica not in started] == ["peer"]
    assert nginx.bytes_served(f"{name}.safetensors") == served
    assert set(answers(serving.url(name), 2).values()) == {state_digest({"w": torch.full((1024,), float(ord(name)))})}

    assert release_node(stays) == 2  # nowhere to go: the copies go with their node's holder
    assert serving.weight_cache() == [] and ray_adapter.named_actor(HOLDER + stays) is None
