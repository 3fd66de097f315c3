"""Clusters, deployments, snapshots, fragmentation and zero-downtime compaction.

>>> from servelab import serving
>>> serving.up(nodes=3, gpus_per_node=2)
>>> serving.deploy("classifier", Classifier, replicas=4, gpus=0.5, weights="s3://models/resnet.safetensors")
>>> serving.deploy_llm("chat", "s3://models/llama-3-8b/", replicas=2)  # vLLM, OpenAI-compatible
>>> serving.scale("classifier", 2)
>>> serving.fragmentation(serving.snapshot()).score
>>> serving.compact(dry_run=True).plan.nodes_to_free
>>> serving.compact()
"""

from servelab.serving.autocompact import AutoPolicy, AutoStatus, autocompact, autocompact_status
from servelab.serving.budget import Budget
from servelab.serving.cluster import add_node, connect, down, gpu_mode, remove_node, up
from servelab.serving.context import NodeType
from servelab.serving.deployments import (
    DeployProgress,
    WeightLoad,
    all_healthy,
    delete,
    delete_all,
    deploy,
    deployments,
    find,
    handle,
    replica_timelines,
    scale,
    url,
    wait_healthy,
    weight_loads,
)
from servelab.serving.discovery import ClusterRecord, find_clusters
from servelab.serving.executor import CompactionEvent, CompactionReport, compact, freed_by
from servelab.serving.fragmentation import Fragmentation, fragmentation
from servelab.serving.llm import deploy_llm
from servelab.serving.planner import Move, Plan, PlanError, plan, projected
from servelab.serving.probe import LatencyStats, LoadProbe
from servelab.serving.reader import snapshot
from servelab.serving.replica_weights import ReplicaTimeline
from servelab.serving.snapshot import DeploymentInfo, ModelCount, Node, Replica, Snapshot
from servelab.serving.weight_cache import CacheEntry, evict_weights, weight_cache

__all__ = [
    "AutoPolicy",
    "AutoStatus",
    "Budget",
    "CacheEntry",
    "ClusterRecord",
    "CompactionEvent",
    "CompactionReport",
    "DeployProgress",
    "DeploymentInfo",
    "Fragmentation",
    "LatencyStats",
    "LoadProbe",
    "ModelCount",
    "Move",
    "Node",
    "NodeType",
    "Plan",
    "PlanError",
    "Replica",
    "ReplicaTimeline",
    "Snapshot",
    "WeightLoad",
    "add_node",
    "all_healthy",
    "autocompact",
    "autocompact_status",
    "compact",
    "connect",
    "delete",
    "delete_all",
    "deploy",
    "deploy_llm",
    "deployments",
    "down",
    "evict_weights",
    "find",
    "find_clusters",
    "fragmentation",
    "freed_by",
    "gpu_mode",
    "handle",
    "plan",
    "projected",
    "remove_node",
    "replica_timelines",
    "scale",
    "snapshot",
    "up",
    "url",
    "wait_healthy",
    "weight_cache",
    "weight_loads",
]
