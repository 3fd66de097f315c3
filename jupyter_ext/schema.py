"""The REST API's types, declared once: the server builds its answers as these TypedDicts (mypy holds
``model.py``, the driver and the manager to them) and the sidebar's TypeScript types are generated
from them at build time (``python jupyter_ext/schema.py > jupyter_ext/src/schema.ts``; a test fails
when the committed file differs). ``API_VERSION`` goes up with every change a sidebar built against
the old types would misread; the cluster listing carries it, and a sidebar of another version asks
for a reload instead of drawing wrong figures.

Only the standard library is imported: the build runs this file before servelab is installed.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Annotated, Any, NotRequired, TypedDict

API_VERSION = 1

# --- the cluster listing ---------------------------------------------------------------------------


class ClusterRecord(TypedDict):
    """A discovery record (servelab.serving.discovery.ClusterRecord): a process on this machine that
    started or attached to the cluster."""

    address: str
    http_port: int | None
    dashboard_url: str | None
    pid: int
    kernel_id: str | None
    started_at: float
    embedded: bool
    token_path: str | None


class ClusterEntry(TypedDict):
    """A cluster the server knows, where it learned of it, and whether it answers."""

    address: str
    source: Annotated[str, "configured (c.Servelab.address), RAY_ADDRESS or discovered (a discovery record)"]
    record: ClusterRecord | None
    reachable: bool
    attached: Annotated[bool, "the server's Ray driver for it runs"]


class ClusterListing(TypedDict):
    """GET /servelab/api/clusters."""

    clusters: list[ClusterEntry]
    refresh_interval_s: float
    api_version: Annotated[int, "API_VERSION of the server: a sidebar of another version asks for a reload"]


# --- one cluster -----------------------------------------------------------------------------------


class Segment(TypedDict):
    """A piece of a node's bar: who holds how much of a resource."""

    holder: Annotated[str, "a deployment ('app/name'), 'other', 'stranded' or 'free'"]
    amount: float
    fraction: Annotated[float, "of the node's total"]


class NodeModel(TypedDict):
    """One node's card."""

    id: str
    label: str
    type: str
    head: bool
    draining: bool
    drained_by: Annotated[str | None, "who drains it: 'servelab', 'ray' (Serve's own compaction) or 'other'"]
    in_use: bool
    cost_per_hour: float
    total: dict[str, float]
    available: dict[str, float]
    replicas: int
    cached_bytes: int
    bars: Annotated[dict[str, list[Segment]], "per resource, in drawing order"]


class CacheEntryModel(TypedDict):
    """A checkpoint the peer weight cache holds (servelab.serving.CacheEntry) and the label of its node."""

    uri: str
    nbytes: int
    reads: int
    published_by: str
    published_at: float
    last_used: float
    node: str
    node_label: str


class DeploymentModel(TypedDict):
    """A Serve deployment (servelab.serving.snapshot.DeploymentInfo) with its health and unplaced replicas."""

    name: str
    app: str
    status: str
    target_replicas: int
    running_replicas: int
    replicas: Annotated[int, "in any state: starting, stopping and migrating ones too"]
    resources: dict[str, float]
    route_prefix: str | None
    autoscaling: bool
    message: str
    healthy: bool
    unplaced: Annotated[int, "replicas Serve has placed on no node"]


class HeaderModel(TypedDict):
    """The figures above the nodes (servelab.widgets.model.Header)."""

    nodes: int
    nodes_in_use: int
    lower_bound: int
    score: float
    cost_per_hour: float
    stranded_gpus: float
    draining: int
    gone: int
    gpus: Annotated[str, "the logical-GPU note, or NVML's physical figures; empty where neither applies"]
    pricing: Annotated[str, "where the $/h figures come from"]
    autoscaler: Annotated[str, "what Ray's autoscaler is doing; empty where it reports nothing"]
    stranded_note: Annotated[str, "what the stranded GPU figure counts, in words"]


class FragmentationModel(TypedDict):
    """servelab.serving.fragmentation.Fragmentation."""

    nodes_in_use: int
    lower_bound: int
    stranded: dict[str, float]
    score: float


class CellModel(TypedDict):
    """One node of a large cluster as a cell (servelab.widgets.overview.NodeCell)."""

    state: Annotated[str, "head, in use, idle, draining, or freed (the plan frees it)"]
    colour: Annotated[str, "lighter for emptier, as the widgets draw it"]
    stranded: bool
    title: Annotated[str, "what hovering says"]


class GroupModel(TypedDict):
    """The nodes of one type of a large cluster, with their summed bars (servelab.widgets.overview.NodeGroup)."""

    type: str
    label: str
    nodes: int
    in_use: int
    idle: int
    draining: int
    freed: int
    cost_per_hour: float
    bars: dict[str, list[Segment]]
    cells: Annotated[list[CellModel], "most stranded first"]


class OverviewModel(TypedDict):
    """A large cluster (over 40 nodes) by node type and as cells."""

    groups: list[GroupModel]
    folded: Annotated[int, 'deployments drawn together as "other deployments"']
    group: Annotated[str | None, "the type whose nodes are in ClusterModel.nodes"]
    detail_nodes: Annotated[int, "how many of its nodes, most stranded first"]


class AutoModel(TypedDict):
    """What the automatic compactor is doing (servelab.serving.AutoStatus, in short)."""

    state: Annotated[str, "waiting, compacting or stopped"]
    delay_s: float
    stable_for_s: float
    compactions: int
    nodes_freed: int
    last_reason: str


class SnapshotModel(TypedDict):
    """A cluster as the server's Ray driver reads it."""

    address: str
    taken_at: float
    fingerprint: str
    header: HeaderModel
    fragmentation: FragmentationModel
    resources: list[str]
    holders: list[str]
    colours: Annotated[dict[str, str], 'per deployment ("app/name"), the same as in the notebook\'s widgets']
    nodes: Annotated[list[NodeModel], "every node; of a large cluster, only the picked type's most stranded"]
    overview: Annotated[OverviewModel | None, "a large cluster by node type and as cells; null otherwise"]
    deployments: list[DeploymentModel]
    weight_cache: list[CacheEntryModel]
    autocompact: Annotated[AutoModel | None, "null when it is off"]


class ClusterModel(SnapshotModel):
    """GET /servelab/api/cluster: the snapshot, the compaction running on it, and how often to ask again."""

    compaction: Annotated[str | None, "the id of the compaction running on this cluster"]
    refresh_interval_s: float


# --- plans and compactions -------------------------------------------------------------------------


class Budget(TypedDict):
    """A compaction's disruption budget (servelab.serving.Budget); what is left out keeps its default."""

    max_draining: NotRequired[int]
    max_migrating: NotRequired[int | None]
    min_saving_per_move: NotRequired[float]


class Move(TypedDict):
    """One replica to move (servelab.serving.Move)."""

    replica: str
    deployment: str
    app: str
    source: str
    target: str


class PlanModel(TypedDict):
    """POST /servelab/api/plans: a servelab.serving.Plan (every field, so it travels back to be run),
    what it aimed for in words and the labels of the nodes it names."""

    fingerprint: Annotated[str, "of the snapshot it was made for: also the plan's id"]
    objective: str
    nodes_to_free: list[str]
    moves: list[Move]
    layout: Annotated[dict[str, str], "replica id -> its node after the plan"]
    idle_nodes: list[str]
    freed_resources: dict[str, float]
    freed_cost_per_hour: float
    blocked: Annotated[dict[str, str], "node id -> why it cannot be freed"]
    kept_by: Annotated[
        dict[str, str],
        "node id -> the rule that keeps it: unsettled, max-moves, room, labels, max-per-node, whole-gpus or layout",
    ]
    nodes_before: int
    nodes_after: int
    lower_bound: int
    method: str
    optimal: bool
    planning_s: float
    memory_warnings: dict[str, str]
    budget: Annotated[Budget, "how compact(plan) runs it"]
    address: str
    aim: str
    labels: dict[str, str]
    unowned_warning: Annotated[str, "where no autoscaler takes the freed nodes away, what the user confirms first; else empty"]


class CompactionEvent(TypedDict):
    """One step of a compaction (servelab.serving.CompactionEvent)."""

    kind: Annotated[str, "planned, draining, migrated, released, replanned, terminated, stopped or done"]
    node: str | None
    message: str
    elapsed_s: float
    nodes_done: int
    nodes_total: int


class LatencyStats(TypedDict):
    """How requests fared (servelab.serving.probe.LatencyStats)."""

    requests: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None


class ReportModel(TypedDict):
    """What a compaction did (servelab.serving.CompactionReport, without the plan and events it already sent)."""

    nodes_freed: list[str]
    replicas_moved: int
    replicas_as_planned: int
    seconds: float
    stopped: bool
    reason: str
    budget: Budget
    before: LatencyStats | None
    during: LatencyStats | None
    terminated: Annotated[list[tuple[str, float]], "freed node and seconds until the autoscaler terminated it"]


class CompactionModel(TypedDict):
    """POST /servelab/api/compactions and GET .../compactions/<id>: a compaction and how it went."""

    id: str
    address: str
    state: Annotated[str, "running, done, stopped or failed"]
    events: list[CompactionEvent]
    report: ReportModel | None
    error: str | None
    started_at: float
    nodes_to_free: list[str]
    budget: Budget


# --- TypeScript ------------------------------------------------------------------------------------


def typescript() -> str:
    """Every TypedDict above as a TypeScript interface, in order, with API_VERSION."""
    header = "// Generated by `python jupyter_ext/schema.py` from jupyter_ext/schema.py: edit that file, not this one.\n"
    parts = [header, f"export const API_VERSION = {API_VERSION};\n"]
    for value in list(globals().values()):
        if isinstance(value, type) and typing.is_typeddict(value):
            parts.append(_interface(value))
    return "\n".join(parts)


def _interface(cls: type) -> str:
    lines = [f"/** {' '.join((cls.__doc__ or '').split())} */", f"export interface {cls.__name__} {{"]
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        kind, note, optional = _unwrap(hint)
        comment = f" // {note}" if note else ""
        lines.append(f"  {name}{'?' if optional else ''}: {_ts(kind)};{comment}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _unwrap(hint: Any) -> tuple[Any, str, bool]:
    """The type inside NotRequired and Annotated, the Annotated note, and whether it is NotRequired
    (read from the hint: under postponed annotations Python 3.11's ``__optional_keys__`` misses it)."""
    note, optional = "", False
    while True:
        origin = typing.get_origin(hint)
        if origin is NotRequired:
            hint, optional = typing.get_args(hint)[0], True
        elif origin is Annotated:
            hint, note = hint.__origin__, str(hint.__metadata__[0])
        else:
            return hint, note, optional


def _ts(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None) or hint is None:
        return "null"
    if hint is Any:
        return "unknown"
    if hint in (str, int, float, bool):
        return {str: "string", int: "number", float: "number", bool: "boolean"}[hint]
    if isinstance(hint, type) and typing.is_typeddict(hint):
        return hint.__name__
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_ts(a) for a in args)
    if origin is list:
        inner = _ts(args[0])
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if origin is tuple:
        return f"[{', '.join(_ts(a) for a in args)}]"
    if origin is dict:
        return f"Record<{_ts(args[0])}, {_ts(args[1])}>"
    raise TypeError(
        f"no TypeScript for {hint!r}: declare the wire in str, int, float, bool, None, list, tuple, dict and TypedDicts"
    )


if __name__ == "__main__":
    sys.stdout.write(typescript())
