"""Parsing Serve's instance details: pure logic on the dict shape Serve's controller returns."""

from __future__ import annotations

import enum

from servelab.serving.ray_adapter import parse_serve_details, schedulable


class State(enum.Enum):  # Serve hands back enums in-process and strings over REST
    RUNNING = "RUNNING"
    STARTING = "STARTING"


DETAILS = {
    "http_options": {"host": "127.0.0.1", "port": 8123},
    "applications": {
        "shop": {
            "route_prefix": "/shop",
            "deployments": {
                "ranker": {
                    "status": "UPDATING",
                    "message": "",
                    "target_num_replicas": 3,
                    "deployment_config": {
                        "num_replicas": 3,
                        "max_replicas_per_node": 2,
                        "ray_actor_options": {"num_gpus": 0.5, "num_cpus": 0, "label_selector": {"zone": "a"}},
                    },
                    "replicas": [
                        {"replica_id": "r1", "node_id": "n1", "state": State.RUNNING},
                        {"replica_id": "r2", "node_id": "", "state": State.STARTING},
                        {"replica_id": "r3", "node_id": "n2", "state": "RUNNING"},
                    ],
                },
                "scaler": {
                    "status": "HEALTHY",
                    "deployment_config": {
                        "autoscaling_config": {"min_replicas": 1},
                        "ray_actor_options": {"resources": {"TPU": 1}},
                    },
                    "replicas": [],
                },
            },
        }
    },
}


def test_deployments_and_replicas_are_parsed_once_into_plain_data() -> None:
    state = parse_serve_details(DETAILS)
    assert (state.http_host, state.http_port) == ("127.0.0.1", 8123)
    ranker, scaler = state.deployments
    assert (ranker.app, ranker.name, ranker.status, ranker.route_prefix) == ("shop", "ranker", "UPDATING", "/shop")
    assert (ranker.target_replicas, ranker.running_replicas, ranker.replicas, ranker.healthy) == (3, 2, 3, False)
    assert ranker.resources == {"GPU": 0.5}
    assert scaler.autoscaling and scaler.resources == {"TPU": 1.0} and scaler.target_replicas == 0
    assert [(r.id, r.node_id, r.state) for r in state.replicas] == [
        ("r1", "n1", "RUNNING"),
        ("r2", None, "STARTING"),
        ("r3", "n2", "RUNNING"),
    ]
    assert state.replicas[0].label_selector == {"zone": "a"} and state.replicas[0].max_replicas_per_node == 2


def test_an_empty_serve_and_node_markers() -> None:
    assert parse_serve_details({}).deployments == ()
    raw = {"CPU": 2, "GPU": 1, "memory": 10, "node:10.0.0.1": 1, "object_store_memory": 5, "accelerator_type:A100": 1, "TPU": 4}
    assert schedulable(raw) == {"CPU": 2.0, "GPU": 1.0, "memory": 10.0, "TPU": 4.0}


def test_a_replica_in_a_placement_group_of_its_own_holds_what_its_bundles_hold() -> None:
    llm = {
        "applications": {
            "chat": {
                "deployments": {
                    "LLMServer:chat": {
                        "deployment_config": {"ray_actor_options": {"num_cpus": 1}},
                        "replicas": [
                            {
                                "replica_id": "a",
                                "node_id": "n1",
                                "state": "RUNNING",
                                "actor_name": "SERVE_REPLICA::chat#LLMServer:chat#a",
                            }
                        ],
                    }
                }
            }
        }
    }
    groups = {"SERVE_REPLICA::chat#LLMServer:chat#a": {"CPU": 2.0, "GPU": 1.0}}  # bundle 0 holds the actor's CPU too

    state = parse_serve_details(llm, groups)

    assert state.replicas[0].resources == {"CPU": 2.0, "GPU": 1.0}
    assert state.deployments[0].resources == {"CPU": 2.0, "GPU": 1.0}
    assert parse_serve_details(llm).replicas[0].resources == {"CPU": 1.0}


def test_resources_ray_derives_from_placement_group_bundles_are_not_node_resources() -> None:
    raw = {"CPU": 0, "CPU_group_0_ea91e17f": 1, "CPU_group_ea91e17f": 1, "bundle_group_ea91e17f": 999.999}
    assert schedulable(raw) == {"CPU": 0.0}
