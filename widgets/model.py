"""What the widgets draw, as pure functions of a Snapshot: per node and resource, who holds what.

Each node gets one bar per resource (GPU, CPU, memory), split into a segment per deployment, the
capacity used by anything else (Serve's controller and proxy), stranded free capacity (no running
replica shape fits there) and usable free capacity. Fractions of the node's total, so nodes of
different sizes line up.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

from servelab.loader.progress import format_bytes
from servelab.serving.fragmentation import Fragmentation, fragmentation, stranded_by_node, stranded_note
from servelab.serving.gpus import LOGICAL, LOGICAL_NOTE
from servelab.serving.replica_weights import ReplicaTimeline
from servelab.serving.snapshot import DEFAULT_PRICES, ModelCount, Node, Snapshot, short_id

RESOURCES = ("GPU", "CPU", "memory")
OTHER, STRANDED, FREE = "other", "stranded", "free"
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#72B7B2", "#EECA3B", "#FF9DA6", "#9D755D", "#E45756", "#17BECF")
FIXED = {OTHER: "#A0A0A0", STRANDED: "#F2A7A0", FREE: "#EEEEEE"}


def colours(holders: list[str], palette: tuple[str, ...] = PALETTE) -> dict[str, str]:
    """A colour per deployment ("app/name"), the same in every view (widgets and sidebar) and on every
    refresh: each name hashes to a palette slot. Names whose slots collide take the next free one, in
    name order (distinct while the palette lasts); ``deployment_colours`` passes every deployment,
    those scaled to 0 included, so scaling one to 0 changes no colour."""
    chosen: dict[str, str] = {}
    free = list(range(len(palette)))
    for name in sorted(set(holders) - set(FIXED)):
        own = zlib.crc32(name.encode()) % len(palette)
        slot = min(free, key=lambda s: (s - own) % len(palette), default=own)  # its own, else the next free
        if free:
            free.remove(slot)
        chosen[name] = palette[slot]
    return {**chosen, **FIXED}


@dataclass(frozen=True)
class Segment:
    """A piece of one node's bar for one resource."""

    node: str  # the row label
    resource: str
    holder: str  # "app/deployment", or OTHER, STRANDED, FREE
    amount: float
    fraction: float


@dataclass(frozen=True)
class Header:
    """The figures above the bars."""

    nodes: int
    nodes_in_use: int
    lower_bound: int
    score: float
    cost_per_hour: float
    stranded_gpus: float
    draining: int
    gone: int
    gpus: str = ""  # what the GPUs really are: the logical note, or NVML's physical figures
    pricing: str = ""  # where the $/h figures come from (a tooltip beside them)
    autoscaler: str = ""  # what Ray's autoscaler is doing, where it reports: idle nodes, launches, unmet demand
    stranded_note: str = ""  # what the stranded GPU figure counts, in words (a tooltip beside it)

    @classmethod
    def of(cls, snapshot: Snapshot, gone: int = 0) -> Header:
        frag: Fragmentation = fragmentation(snapshot)
        return cls(
            nodes=len(snapshot.nodes),
            nodes_in_use=frag.nodes_in_use,
            lower_bound=frag.lower_bound,
            score=frag.score,
            cost_per_hour=sum(n.cost for n in snapshot.nodes if n.alive),
            stranded_gpus=frag.stranded.get("GPU", 0.0),
            draining=sum(1 for n in snapshot.nodes if n.draining),
            gone=gone,
            gpus=gpu_line(snapshot),
            pricing=pricing_note(snapshot),
            autoscaler=autoscaler_line(snapshot),
            stranded_note=stranded_note(snapshot),
        )


def autoscaler_line(snapshot: Snapshot) -> str:
    """What Ray's autoscaler is doing, in one line, or '' where it reports nothing: nodes idle (which
    it terminates after its idle timeout) and why replicas are pending (what it is launching for them).

    >>> autoscaler_line(snapshot)
    'autoscaler: 2 running, 1 idle (4f1c2a9b for 12 s); 4 request(s) of GPU 0.5 wait for a node: launching 1 node(s) of type gpu2'
    """
    state = snapshot.autoscaler
    if state is None:
        return ""
    idle = [n for n in state.nodes if n.status == "idle"]
    line = f"autoscaler: {len(state.nodes) - len(idle)} running, {len(idle)} idle"
    if idle:
        line += " (" + ", ".join(f"{short_id(n.node_id)} for {n.idle_s:.0f} s" for n in idle) + ")"
    doing = state.describe()
    return f"{line}; {doing}" if doing else f"{line}; at rest"


def pricing_note(snapshot: Snapshot) -> str:
    """Where the $/h figures come from: each node's own price, or the default list by resources; on
    logical GPUs, what such nodes would cost in a cloud rather than what this machine costs."""
    defaulted = [n for n in snapshot.nodes if n.cost_per_hour is None]
    note = "$/h: each node's cost_per_hour"
    if defaulted:
        rates = f"${DEFAULT_PRICES['GPU']:g} per GPU, ${DEFAULT_PRICES['CPU']:g} per CPU, ${DEFAULT_PRICES['memory'] * 2**30:g} per GiB"
        note = (
            f"$/h: {len(defaulted)} of {len(snapshot.nodes)} node(s) priced by their resources at on-demand cloud rates ({rates})"
        )
    if snapshot.gpu_mode == LOGICAL:
        note += "; the GPUs are logical, so these are what such nodes would cost, not what this machine costs"
    return note


def gpu_line(snapshot: Snapshot) -> str:
    """Physical GPU truth beside Ray's reservations: the logical note, or model, memory and utilisation.

    >>> gpu_line(snapshot)
    '2 x NVIDIA H200 (physical): 3.1 GB of 287 GB used, 4% busy'
    """
    if snapshot.gpu_mode == LOGICAL:
        return LOGICAL_NOTE
    if not snapshot.gpus:
        return ""
    models = Counter(g.name for g in snapshot.gpus)
    used = sum(g.memory_used for g in snapshot.gpus)
    total = sum(g.memory_total for g in snapshot.gpus)
    busy = [g.utilization for g in snapshot.gpus if g.utilization is not None]
    line = ", ".join(f"{count} x {name}" for name, count in sorted(models.items()))
    line += f" (physical): {format_bytes(used)} of {format_bytes(total)} used"
    return line + (f", {sum(busy) / len(busy):.0f}% busy" if busy else "")


def node_label(node: Node) -> str:
    """``gpu2 3f2a1c9e`` plus ``(head)`` / ``(draining)``: short, unique, and says the state."""
    label = f"{node.type} {short_id(node.id)}"
    if node.head:
        label += " (head)"
    if node.draining:
        label += " (draining)"
    return label


def label_of(snapshot: Snapshot, node_id: str) -> str:
    """``node_label`` of ``node_id``, or its short id when the node is not in ``snapshot`` (it left)."""
    node = next((n for n in snapshot.nodes if n.id == node_id), None)
    return node_label(node) if node is not None else short_id(node_id) or "-"


def resources_of(snapshot: Snapshot) -> list[str]:
    """The resources worth a column: GPU and CPU where nodes have them, memory only where replicas ask for it."""
    asked = {name for r in snapshot.replicas for name, amount in r.resources.items() if amount}
    return [
        name
        for name in RESOURCES
        if any(n.total.get(name, 0.0) > 0 for n in snapshot.nodes) and (name != "memory" or name in asked)
    ]


def segments(snapshot: Snapshot) -> list[Segment]:
    """Every node's bars, nodes in snapshot order (head first), deployments in name order."""
    strand = stranded_by_node(snapshot)
    resources = resources_of(snapshot)
    return [segment for node in ordered_nodes(snapshot) for segment in node_segments(snapshot, node, strand, resources)]


def ordered_nodes(snapshot: Snapshot) -> list[Node]:
    """The head first, then by type and id: the order every view lists nodes in."""
    return sorted(snapshot.nodes, key=lambda n: (not n.head, n.type, n.id))


def node_segments(snapshot: Snapshot, node: Node, strand: dict[str, dict[str, float]], resources: list[str]) -> list[Segment]:
    """One node's bars: per resource, a segment per deployment, then other, stranded and free."""
    label = node_label(node)
    result = []
    for resource in resources:
        total = node.total.get(resource, 0.0)
        if total <= 0:
            continue
        held: dict[str, float] = {}
        for replica in snapshot.replicas_on(node.id):
            amount = replica.resources.get(resource, 0.0)
            if amount:
                key = f"{replica.app}/{replica.deployment}"
                held[key] = held.get(key, 0.0) + amount
        free = max(0.0, node.available.get(resource, 0.0))
        lost = min(free, strand.get(node.id, {}).get(resource, 0.0))
        other = max(0.0, total - free - sum(held.values()))
        parts = [*sorted(held.items()), (OTHER, other), (STRANDED, lost), (FREE, free - lost)]
        result += [Segment(label, resource, holder, amount, amount / total) for holder, amount in parts if amount > 1e-9]
    return result


def deployment_colours(snapshot: Snapshot) -> dict[str, str]:
    """``colours`` of every deployment of ``snapshot``, running replicas or not."""
    return colours(holders(snapshot) + [f"{d.app}/{d.name}" for d in snapshot.deployments])


def holders(snapshot: Snapshot) -> list[str]:
    """Deployments as ``app/deployment``, sorted: one colour each."""
    return sorted({f"{r.app}/{r.deployment}" for r in snapshot.replicas})


@dataclass(frozen=True)
class ModelRow:
    """One model of multiplexed deployments: its counts summed over their replicas, and how many hold it now."""

    count: ModelCount
    held_by: int


def model_rows(snapshot: Snapshot, deployment: str | None = None) -> list[ModelRow]:
    """Per model (of ``deployment``, or of every multiplexed one): requests, hits, loads, evictions; busiest first."""
    rows: dict[str, ModelRow] = {}
    for replica in snapshot.replicas:
        if deployment is not None and deployment not in (replica.deployment, replica.app):
            continue
        for c in replica.models:
            row = rows.get(c.model_id) or ModelRow(ModelCount(c.model_id), 0)
            rows[c.model_id] = ModelRow(row.count + c, row.held_by + int(c.loaded))
    return sorted(rows.values(), key=lambda r: (-r.count.requests, r.count.model_id))


@dataclass(frozen=True)
class Phase:
    """One bar of a replica timeline: seconds from the deployment's first replica being scheduled."""

    replica: str  # the row label
    phase: str
    start_s: float
    seconds: float
    detail: str


PHASES = ("waiting for a node", "process start", "weights (remote)", "weights (peer)", "constructor", "until first request")


def timeline_phases(timelines: list[ReplicaTimeline]) -> list[Phase]:
    """Each replica's start as bars: waiting for a node (where its node was launched for it), process
    start, weights by source, constructor, then waiting for its first request; rows in start order,
    time zero when the first replica was scheduled."""
    if not timelines:
        return []
    zero = min(t.scheduled or t.constructing for t in timelines)
    phases = []
    for t in sorted(timelines, key=lambda t: t.scheduled or t.constructing):
        row = f"{short_id(t.replica)} ({t.deployment})"
        marks = [
            ("waiting for a node", t.scheduled, t.node_ready, "no node had room: its node was launched (by the autoscaler)"),
            (
                "process start",
                t.node_ready or t.scheduled,
                t.weights_started,
                "Serve created it; the process starts and imports",
            ),
            (
                f"weights ({t.source})",
                t.weights_started,
                t.weights_done,
                f"{format_bytes(t.nbytes)} from {'the peer cache' if t.source == 'peer' else 'remote storage'} at "
                f"{t.gbps:.2f} GB/s ({t.stream_s:.2f} s of {t.weights_s:.2f} s; the rest: the holder's or cache's start)",
            ),
            ("constructor", t.weights_done, t.constructed, "the class's constructor"),
            ("until first request", t.constructed, t.first_request, "ready, waiting for its first request"),
        ]
        for phase, begin, end, detail in marks:
            if begin is not None and end is not None:
                phases.append(Phase(row, phase, begin - zero, max(end - begin, 0.0), detail))
    return phases
