"""What servelab tells Ray's autoscaler and reads back from it (pure logic, no Ray): the provider
config, node limits, Ray's cluster status parsed, and the lines the views show."""

from __future__ import annotations

import pytest
from ray.autoscaler.v2.schema import (
    ClusterStatus,
    LaunchRequest,
    NodeInfo,
    NodeUsage,
    RayTaskActorDemand,
    ResourceDemandSummary,
    ResourceRequestByCount,
)

from servelab.errors import ClusterError
from servelab.serving import autoscaler
from servelab.serving.autoscaler import NodeLimits, parse_status
from servelab.serving.cluster import _autoscaling_plan
from servelab.serving.snapshot import AutoscalerState, Demand, Node, NodeState, Snapshot
from servelab.widgets.model import Header, autoscaler_line
from servelab.widgets.summary import header_text

GPU2 = {"resources": {"CPU": 1, "GPU": 2}, "labels": {"servelab.io/node-type": "gpu2"}}


def test_the_config_gives_each_type_its_limits_and_the_provider_its_gcs() -> None:
    config = autoscaler.config({"gpu2": GPU2}, {"gpu2": NodeLimits(1, 3)}, 30, "127.0.0.1:24000", head_cpus=1)
    assert config["provider"]["gcs_address"] == "127.0.0.1:24000"
    assert config["provider"]["type"] == "external" and config["provider"]["module"] == autoscaler.PROVIDER
    assert config["idle_timeout_minutes"] == 0.5 and config["max_workers"] == 3
    worker = config["available_node_types"]["gpu2"]
    assert (worker["min_workers"], worker["max_workers"], worker["resources"]) == (1, 3, {"CPU": 1, "GPU": 2})
    assert config["available_node_types"][autoscaler.HEAD_TYPE]["max_workers"] == 0
    with pytest.raises(ClusterError, match="idle_timeout_s=-1 must be a non-negative number"):
        autoscaler.config({"gpu2": GPU2}, {"gpu2": NodeLimits()}, -1, "127.0.0.1:1", head_cpus=1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"min": 3, "max": 1}, "min=3 is more than max=1"),
        ({"max": -1}, "max=-1 must be a non-negative integer"),
        ({"min": 1.5}, "min=1.5 must be a non-negative integer"),
        ({"count": 2}, "unexpected keyword argument 'count'.*use cpus, gpus, memory, labels, cost_per_hour, min, max"),
    ],
)
def test_bad_node_limits_name_the_type_and_the_fix(spec: dict, message: str) -> None:
    with pytest.raises(ClusterError, match=f"node type 'gpu2': .*{message}"):
        _autoscaling_plan(3, 1, 2, None, {"gpu2": spec})


def test_without_node_types_one_type_scales_from_zero_to_nodes() -> None:
    types, limits = _autoscaling_plan(4, 2, 1, None, None)
    assert limits == {"worker": NodeLimits(0, 4)} and types["worker"].resources == {"CPU": 2, "GPU": 1}


def node_info(node_id: str, status: str, idle_ms: int = 0, kind: str = "gpu2") -> NodeInfo:
    return NodeInfo(kind, kind, f"i-{node_id}", "127.0.0.1", status, node_id, NodeUsage([], idle_ms))


def test_rays_cluster_status_becomes_lifecycle_launches_and_demand() -> None:
    status = ClusterStatus(
        active_nodes=[node_info("a" * 56, "RUNNING")],
        idle_nodes=[node_info("b" * 56, "IDLE", 12_000), node_info("f" * 56, "IDLE", 5_000, autoscaler.HEAD_TYPE)],
        pending_launches=[LaunchRequest("gpu2", "gpu2", 1, LaunchRequest.Status.PENDING, 0)],
        pending_nodes=[NodeInfo("gpu2", "gpu2", "i-new", "", "starting")],
        failed_nodes=[node_info("c" * 56, "DEAD")],
        resource_demands=ResourceDemandSummary(
            ray_task_actor_demand=[RayTaskActorDemand([ResourceRequestByCount({"GPU": 0.5}, 4)])]
        ),
    )
    state = parse_status(status)
    assert state.nodes == (NodeState("a" * 56, "gpu2", "running"), NodeState("b" * 56, "gpu2", "idle", 12.0))  # no head
    assert state.launching == (("gpu2", 2),) and state.demand == (Demand({"GPU": 0.5}, 4),) and state.busy
    assert state.terminated("c" * 56) and not state.terminated("a" * 56) and not state.terminated("d" * 56)
    line = autoscaler_line(Snapshot((), (), autoscaler=state))
    assert line == (
        "autoscaler: 1 running, 1 idle (bbbbbbbb for 12 s); "
        "4 request(s) of GPU 0.5 wait for a node: launching 2 node(s) of type gpu2"
    )


def test_an_autoscaler_at_rest_and_none_at_all() -> None:
    rest = AutoscalerState(nodes=(NodeState("a" * 56, "gpu2", "running"),))
    assert not rest.busy and rest.describe() == ""
    assert autoscaler_line(Snapshot((), (), autoscaler=rest)) == "autoscaler: 1 running, 0 idle; at rest"
    assert AutoscalerState(demand=(Demand({"GPU": 8.0}, 1),)).describe() == (
        "1 request(s) of GPU 8 wait for a node; none is launching for them yet (or every type that fits is at its max)"
    )
    plain = Snapshot((Node("h", "head", {"CPU": 1.0}, {"CPU": 1.0}, head=True),), ())
    assert autoscaler_line(plain) == "" and "autoscaler" not in header_text(Header.of(plain))


def test_the_autoscaler_state_survives_the_json_round_trip() -> None:
    state = AutoscalerState(
        nodes=(NodeState("a" * 56, "gpu2", "idle", 3.0),),
        launching=(("gpu2", 1),),
        demand=(Demand({"GPU": 0.5}, 2),),
        dead=("c" * 56,),
    )
    snap = Snapshot((), (), autoscaler=state)
    assert Snapshot.from_json(snap.to_json()) == snap
    assert Snapshot.from_json(Snapshot((), ()).to_json()).autoscaler is None
