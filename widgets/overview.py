"""What the views draw for a large cluster, as pure functions of a Snapshot (and a Plan).

Above ``LARGE`` nodes a bar row per node stops being readable (34 px a row: 34,000 px at 1000
nodes), so the widgets and the sidebar switch to one screen: a row of bars per node type (what
each deployment holds of the group's GPUs, CPUs and memory, what is stranded and free), a cell per
node (shaded by how full it is, a red dot where capacity is stranded beside replicas, a cross where the plan frees
it), and per-node bars only for the nodes of one type a person picks, most stranded first. The
``TOP_DEPLOYMENTS`` biggest deployments keep their colour; the rest are drawn together as
``OTHERS``. The widgets (``figures``) and the sidebar (``jupyter_ext.model``) draw this same model.

>>> view = overview(snapshot(), plan(snapshot()))
>>> [(g.type, g.nodes, g.freed) for g in view.groups]
[('head', 1, 0), ('gpu8', 412, 37), ...]
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from servelab.serving.fragmentation import stranded_by_node
from servelab.serving.planner import Plan
from servelab.serving.snapshot import Node, Snapshot
from servelab.widgets.model import (
    FIXED,
    PALETTE,
    Segment,
    colours,
    node_label,
    node_segments,
    ordered_nodes,
    resources_of,
)

LARGE = 40  # nodes above which the views summarise: 40 bar rows still fit a screen or two
TOP_DEPLOYMENTS = 8  # deployments with a colour of their own in a large view
DETAIL_NODES = 30  # per-node bars shown for a picked node type
OTHERS = "other deployments"
OTHERS_COLOUR = "#BAB0AC"
# No reds: in a large view red means stranded capacity, and the eye must find it at once.
LARGE_PALETTE = tuple(c for c in PALETTE if c not in ("#E45756", "#FF9DA6"))
EMPTY, LIGHT, DARK = "#EEEEEE", (222, 235, 247), (8, 69, 148)


def is_large(snapshot: Snapshot) -> bool:
    """True where the views summarise rather than draw every node."""
    return len(snapshot.nodes) > LARGE


def main_resource(node: Node) -> str:
    """The resource a node is bought for: GPU where it has any, else CPU."""
    return "GPU" if node.total.get("GPU", 0.0) > 0 else "CPU"


@dataclass(frozen=True)
class NodeCell:
    """One node in the cell map: its state and how full and how stranded its main resource is."""

    id: str
    label: str
    type: str
    state: str  # "head", "in use", "idle", "draining", or "freed" (the plan frees it)
    resource: str  # main_resource
    used: float  # fraction of the main resource held
    stranded: float  # of the main resource, free but fitting no running replica shape
    replicas: int

    @property
    def colour(self) -> str:
        """Lighter for emptier: an idle node is pale grey, a full one dark blue."""
        if self.state == "idle" or self.used <= 0:
            return EMPTY
        mix = [round(a + (b - a) * min(self.used, 1.0)) for a, b in zip(LIGHT, DARK, strict=True)]
        return "#{:02X}{:02X}{:02X}".format(*mix)

    @property
    def title(self) -> str:
        """What hovering over the cell says."""
        text = f"{self.label}: {self.state}, {self.used:.0%} {self.resource} held, {self.replicas} replica(s)"
        return text + (f", {self.stranded:.3g} {self.resource} stranded" if self.stranded else "")


@dataclass(frozen=True)
class NodeGroup:
    """The nodes of one type: how many are in use, idle, draining and freed by the plan, what they
    cost, and their summed bars (segments labelled with the group's label)."""

    type: str
    label: str
    nodes: int
    in_use: int
    idle: int
    draining: int
    freed: int
    cost_per_hour: float
    stranded: dict[str, float]
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Overview:
    """A large cluster on one screen: a group per node type, a cell per node, the deployments shown."""

    groups: tuple[NodeGroup, ...]
    cells: tuple[NodeCell, ...]
    shown: tuple[str, ...]  # deployments ("app/name") with a colour of their own
    folded: int  # deployments drawn together as OTHERS
    colours: dict[str, str]  # every deployment's: its own for the shown, OTHERS_COLOUR for the rest


def top_deployments(snapshot: Snapshot, limit: int = TOP_DEPLOYMENTS) -> list[str]:
    """The ``limit`` deployments holding the most (GPU first, then CPU), as ``app/name``."""
    held: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for replica in snapshot.replicas:
        totals = held[f"{replica.app}/{replica.deployment}"]
        totals[0] += replica.resources.get("GPU", 0.0)
        totals[1] += replica.resources.get("CPU", 0.0)
    return sorted(held, key=lambda name: (-held[name][0], -held[name][1], name))[:limit]


def overview(snapshot: Snapshot, plan: Plan | None = None, shown: list[str] | None = None) -> Overview:
    """``snapshot`` summarised by node type, each node a cell; the nodes ``plan`` frees marked.
    ``shown`` names the deployments with their own colour (default: ``top_deployments``), so a plan's
    before and after can share them."""
    shown = shown if shown is not None else top_deployments(snapshot)
    freed = set(plan.nodes_to_free) if plan is not None else set()
    strand = stranded_by_node(snapshot)
    resources = resources_of(snapshot)
    cells: dict[str, list[NodeCell]] = defaultdict(list)
    segments: dict[str, list[Segment]] = defaultdict(list)
    for node in ordered_nodes(snapshot):
        cells[node.type].append(_cell(snapshot, node, strand, freed))
        segments[node.type] += node_segments(snapshot, node, strand, resources)
    groups = tuple(_group(snapshot, kind, cells[kind], segments[kind], set(shown)) for kind in cells)
    ordered = tuple(c for kind in cells for c in sorted(cells[kind], key=_most_stranded_first))
    everyone = {f"{r.app}/{r.deployment}" for r in snapshot.replicas} | {f"{d.app}/{d.name}" for d in snapshot.deployments}
    palette = {**dict.fromkeys([*everyone, OTHERS], OTHERS_COLOUR), **colours(list(shown), LARGE_PALETTE)}
    return Overview(groups, ordered, tuple(shown), len(everyone - set(shown)), palette)


def group_detail(snapshot: Snapshot, node_type: str, limit: int = DETAIL_NODES) -> list[Node]:
    """The nodes of ``node_type`` a person looks at first: most stranded, then fullest; ``limit`` of them."""
    strand = stranded_by_node(snapshot)
    mine = [n for n in snapshot.nodes if n.type == node_type]
    cells = {n.id: _cell(snapshot, n, strand, set()) for n in mine}
    return sorted(mine, key=lambda n: _most_stranded_first(cells[n.id]))[:limit]


def _most_stranded_first(cell: NodeCell) -> tuple[float, float, str]:
    """The order a type's nodes are shown in: most stranded, then fullest."""
    return (-cell.stranded, -cell.used, cell.id)


def folded(parts: list[Segment], shown: set[str], label: str | None = None) -> list[Segment]:
    """``parts`` with deployments outside ``shown`` merged into OTHERS (and relabelled ``label``)."""
    merged: dict[tuple[str, str, str], list[float]] = {}
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for s in parts:
        holder = s.holder if s.holder in shown or s.holder in FIXED else OTHERS
        row = label or s.node
        entry = merged.setdefault((row, s.resource, holder), [0.0, 0.0])
        entry[0] += s.amount
        entry[1] += s.fraction
        totals[(row, s.resource)] += s.amount
    return [
        Segment(row, resource, holder, amount, amount / totals[(row, resource)] if label else fraction)
        for (row, resource, holder), (amount, fraction) in merged.items()
    ]


def _cell(snapshot: Snapshot, node: Node, strand: dict[str, dict[str, float]], freed: set[str]) -> NodeCell:
    resource = main_resource(node)
    total = node.total.get(resource, 0.0)
    used = 1.0 - node.available.get(resource, 0.0) / total if total else 0.0
    replicas = len(snapshot.replicas_on(node.id))
    state = (
        "head" if node.head
        else "freed" if node.id in freed
        else "draining" if node.draining
        else "in use" if replicas
        else "idle"
    )  # fmt: skip
    # Marked only beside replicas: an idle node is idle (the autoscaler's or compaction's to free),
    # and 300 red dots on an idle pool would hide the nodes where placement strands capacity.
    stranded = strand.get(node.id, {}).get(resource, 0.0) if replicas else 0.0
    return NodeCell(node.id, node_label(node), node.type, state, resource, max(used, 0.0), stranded, replicas)


def _group(snapshot: Snapshot, kind: str, cells: list[NodeCell], parts: list[Segment], shown: set[str]) -> NodeGroup:
    label = f"{kind} ({len(cells)} node{'s' if len(cells) > 1 else ''})"
    stranded: dict[str, float] = defaultdict(float)
    for s in parts:
        if s.holder == "stranded":
            stranded[s.resource] += s.amount
    states = [c.state for c in cells]
    return NodeGroup(
        type=kind,
        label=label,
        nodes=len(cells),
        in_use=sum(1 for c in cells if c.replicas and c.state != "head"),
        idle=states.count("idle"),
        draining=states.count("draining"),
        freed=states.count("freed"),
        cost_per_hour=sum(n.cost for n in snapshot.nodes if n.type == kind and n.alive),
        stranded=dict(stranded),
        segments=tuple(folded(parts, shown, label)),
    )
