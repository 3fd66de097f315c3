"""Static HTML and text summaries of snapshots, plans and compaction reports.

They are the rich reprs the magics return (registered as IPython formatters), and what every
widget shows where no widget frontend runs (plain IPython, nbval, a notebook on GitHub).
"""

from __future__ import annotations

from collections import Counter
from html import escape

from servelab.loader.progress import format_bytes
from servelab.serving.budget import saving_per_move
from servelab.serving.executor import CompactionReport
from servelab.serving.planner import Plan
from servelab.serving.probe import LatencyStats
from servelab.serving.snapshot import Node, Snapshot, format_resources, short_id
from servelab.widgets.model import Header, ModelRow, Phase, label_of, node_label, ordered_nodes
from servelab.widgets.overview import is_large, overview

TABLE = 'style="border-collapse:collapse;font-size:12px;margin:4px 0"'
CELL = 'style="padding:2px 10px;text-align:left;border-bottom:1px solid #ddd"'


def header_text(header: Header) -> str:
    line = (
        f"{header.nodes_in_use} node(s) in use, lower bound {header.lower_bound}, "
        f"fragmentation {header.score:.2f}, ${header.cost_per_hour:.2f}/h, stranded GPU {header.stranded_gpus:g}"
    )
    if header.draining:
        line += f", {header.draining} draining"
    if header.gone:
        line += f", {gone_text(header.gone)}"
    if header.gpus:
        line += f"; {header.gpus}"
    if header.autoscaler:
        line += f"; {header.autoscaler}"
    return line


def gone_text(gone: int) -> str:
    """Nodes a live view saw that have left the cluster since (compaction freed them, say)."""
    return f"{gone} node{'s' if gone > 1 else ''} left since this view opened"


def header_html(header: Header) -> str:
    """The header line with its figures in bold (ClusterView's header)."""
    parts = [
        f"<b>{header.nodes_in_use}</b> node(s) in use (lower bound <b>{header.lower_bound}</b>)",
        f"fragmentation <b>{header.score:.2f}</b>",
        f'<span title="{escape(header.pricing)}" style="cursor:help"><b>${header.cost_per_hour:.2f}</b>/h</span>',
        f'<span title="{escape(header.stranded_note)}" style="cursor:help">stranded GPU <b>{header.stranded_gpus:g}</b></span>',
    ]
    if header.draining:
        parts.append(f"{header.draining} draining")
    if header.gone:
        parts.append(gone_text(header.gone))
    if header.gpus:
        parts.append(f"<i>{escape(header.gpus)}</i>")
    if header.autoscaler:
        parts.append(f"<i>{escape(header.autoscaler)}</i>")
    return " &middot; ".join(parts)


def snapshot_text(snapshot: Snapshot) -> str:
    lines = [f"Cluster: {len(snapshot.nodes)} node(s); " + header_text(Header.of(snapshot))]
    if is_large(snapshot):
        lines += ["  " + " | ".join(row) for row in _group_rows(snapshot)]
    else:
        for node in ordered_nodes(snapshot):
            lines.append(f"  {node_label(node):32} free {format_resources(node.available) or '-':22} {_held(snapshot, node)}")
    for d in snapshot.deployments:
        lines.append(f"  deployment {d.app}/{d.name}: {d.status} {d.running_replicas}/{d.target_replicas} running")
    for uri, size, where, reads in _cache_rows(snapshot):
        lines.append(f"  cached weights {uri}: {size} on {where}, read {reads} time(s) from the cache")
    for index, name, where, memory, busy, holders in _gpu_rows(snapshot):
        lines.append(f"  GPU {index} {name} on {where}: {memory} used, {busy} busy; {holders}")
    return "\n".join(lines)


def _held(snapshot: Snapshot, node: Node) -> str:
    """``chat x2, embed x1``: the replicas a node holds, or ``idle``."""
    held = Counter(r.deployment for r in snapshot.replicas_on(node.id))
    return ", ".join(f"{d} x{n}" for d, n in sorted(held.items())) or "idle"


GROUP_HEAD = ["node type", "nodes", "in use", "idle", "draining", "stranded", "$/h"]


def _group_rows(snapshot: Snapshot) -> list[list[str]]:
    """A large cluster's nodes by type (``servelab.widgets.overview``): counts, stranded capacity, cost."""
    return [
        [
            g.type,
            str(g.nodes),
            str(g.in_use),
            str(g.idle),
            str(g.draining),
            format_resources(g.stranded) or "-",
            f"{g.cost_per_hour:,.2f}",
        ]
        for g in overview(snapshot).groups
    ]


def snapshot_html(snapshot: Snapshot) -> str:
    header = Header.of(snapshot)
    nodes = (
        _table(GROUP_HEAD, _group_rows(snapshot))
        if is_large(snapshot)
        else _table(
            ["node", "total", "free", "replicas"],
            [
                [
                    node_label(node),
                    format_resources(node.total),
                    format_resources(node.available) or "-",
                    _held(snapshot, node),
                ]
                for node in ordered_nodes(snapshot)
            ],
        )
    )
    deployments = [
        [f"{d.app}/{d.name}", d.status, f"{d.running_replicas}/{d.target_replicas}", format_resources(d.resources) or "-"]
        for d in snapshot.deployments
    ]
    return (
        f"<div><b>Cluster</b>: {len(snapshot.nodes)} node(s); {escape(header_text(header))}"
        + nodes
        + (_table(["deployment", "status", "running", "per replica"], deployments) if deployments else "<i>no deployments</i>")
        + (_table(["cached weights", "size", "held on", "reads"], _cache_rows(snapshot)) if snapshot.weight_cache else "")
        + (
            _table(["GPU", "model", "raylet", "memory used", "busy", "replicas' memory"], _gpu_rows(snapshot))
            if snapshot.gpus
            else ""
        )
        + "</div>"
    )


def _cache_rows(snapshot: Snapshot) -> list[list[str]]:
    """The peer weight cache's checkpoints: URI, size, the node holding them, reads from the cache."""
    return [[e.uri, format_bytes(e.nbytes), label_of(snapshot, e.node), str(e.reads)] for e in snapshot.weight_cache]


def _gpu_rows(snapshot: Snapshot) -> list[list[str]]:
    """Each physical GPU (NVML): index, model, its raylet, memory, utilisation, and the replicas holding memory on it."""
    rows = []
    for gpu in snapshot.gpus:
        pids = {p.pid: p.memory for p in gpu.processes}
        held = [f"{r.deployment} {format_bytes(pids[r.pid])}" for r in snapshot.replicas if r.pid in pids]
        rows.append(
            [
                str(gpu.index),
                gpu.name,
                label_of(snapshot, gpu.node_id) if gpu.node_id else "-",
                f"{format_bytes(gpu.memory_used)} of {format_bytes(gpu.memory_total)}",
                "-" if gpu.utilization is None else f"{gpu.utilization:.0f}%",
                ", ".join(held) or ("no replica" if gpu.processes else "per-process figures not readable here"),
            ]
        )
    return rows


def plan_aim(plan: Plan) -> str:
    """What the plan aimed for and how good it is, in a user's words (not the solver's)."""
    goal = "free the most nodes" if plan.objective == "nodes" else "save the most $/h"
    return f"{goal}; no plan does better" if plan.optimal else f"{goal}; a quick search's answer, maybe not the best"


def plan_pace(plan: Plan) -> str:
    """How the plan will run: its budget in words ("1 node draining at a time, ...")."""
    budget = plan.budget
    nodes = "1 node draining at a time" if budget.max_draining == 1 else f"up to {budget.max_draining} nodes draining at once"
    per_deployment = f", at most {budget.max_migrating} replica(s) of a deployment moving at once" if budget.max_migrating else ""
    return f"runs {nodes}{per_deployment}, if it saves at least ${budget.min_saving_per_move:.2f}/h per move"


def plan_text(plan: Plan) -> str:
    lines = [
        f"Plan ({plan_aim(plan)}): "
        f"{plan.nodes_before} -> {plan.nodes_after} node(s) in use (lower bound {plan.lower_bound}), "
        f"frees {len(plan.nodes_to_free)} node(s), {format_resources(plan.freed_resources) or 'nothing'}, "
        f"${plan.freed_cost_per_hour:.2f}/h, {len(plan.moves)} move(s) ({_per_move(plan)}); {plan_pace(plan)}"
    ]
    lines += _first(
        [
            f"  move {m.app}/{m.deployment} {short_id(m.replica)}: {short_id(m.source)} -> {short_id(m.target)}"
            for m in plan.moves
        ],
        "move(s)",
    )
    lines += _first([f"  {short_id(node)} stays: {reason}" for node, reason in plan.blocked.items()], "node(s) that stay")
    lines += [f"  GPU memory: {short_id(replica)} {reason}" for replica, reason in plan.memory_warnings.items()]
    return "\n".join(lines)


def plan_html(plan: Plan) -> str:
    moves = [[f"{m.app}/{m.deployment}", short_id(m.replica), short_id(m.source), short_id(m.target)] for m in plan.moves]
    stays = [[short_id(node), reason] for node, reason in plan.blocked.items()]
    return (
        f"<div><b>Plan</b> ({escape(plan_aim(plan))}): "
        f"{plan.nodes_before} &rarr; {plan.nodes_after} node(s) in use (lower bound {plan.lower_bound}); "
        f"frees <b>{len(plan.nodes_to_free)}</b> node(s): {escape(format_resources(plan.freed_resources) or 'nothing')}, "
        f"<b>${plan.freed_cost_per_hour:.2f}/h</b> for {len(plan.moves)} move(s) ({escape(_per_move(plan))}); "
        f"{escape(plan_pace(plan))}"
        + (_listed(["deployment", "replica", "from", "to"], moves, "move(s)") if moves else "<br><i>no moves</i>")
        + (_listed(["node that stays", "why"], stays, "node(s) that stay") if stays else "")
        + (
            _table(["replica", "GPU memory"], [[short_id(r), w] for r, w in plan.memory_warnings.items()])
            if plan.memory_warnings
            else ""
        )
        + "</div>"
    )


def report_text(report: CompactionReport) -> str:
    if report.dry_run:
        return "Dry run, nothing changed. " + plan_text(report.plan)
    state = f"stopped: {report.reason}" if report.stopped else "done"
    lines = [
        f"Compaction {state}: freed {len(report.nodes_freed)} node(s), moved {report.replicas_moved} replica(s) "
        f"({report.replicas_as_planned} as planned) in {report.seconds:.1f} s, ${_freed_cost(report):.2f}/h saved"
        + _terminated(report)
    ]
    for phase, stats in (("before", report.before), ("during", report.during)):
        if stats is not None:
            lines.append(f"  requests {phase}: {_stats(stats)}")
    return "\n".join(lines)


def report_html(report: CompactionReport) -> str:
    if report.dry_run:
        return "<div><i>Dry run, nothing changed.</i></div>" + plan_html(report.plan)
    colour = "#B00" if report.stopped else "#060"
    state = f"stopped: {escape(report.reason)}" if report.stopped else "done"
    rows = [[phase, *_stats_cells(stats)] for phase, stats in (("before", report.before), ("during", report.during)) if stats]
    return (
        f'<div><b style="color:{colour}">Compaction {state}</b>: freed <b>{len(report.nodes_freed)}</b> node(s), '
        f"moved {report.replicas_moved} replica(s) ({report.replicas_as_planned} as planned) in {report.seconds:.1f} s, "
        f"<b>${_freed_cost(report):.2f}/h</b> saved"
        + escape(_terminated(report))
        + (_table(["requests", "sent", "failed", "p50 ms", "p99 ms"], rows) if rows else "")
        + "</div>"
    )


def _terminated(report: CompactionReport) -> str:
    """When the autoscaler terminated the freed nodes, counted from their drain (the $/h saved from then)."""
    if not report.terminated:
        return ""
    seconds = sorted(after for _, after in report.terminated)
    span = f"{seconds[0]:.1f} s" if len(seconds) == 1 else f"{seconds[0]:.1f}-{seconds[-1]:.1f} s"
    return f"; the autoscaler terminated {len(seconds)} of them {span} after their drain"


MODEL_HEAD = ["model", "held by", "requests", "hit rate", "loads", "evictions", "errors", "mean load", "bytes loaded"]


def models_headline(rows: list[ModelRow], name: str) -> str:
    requests = sum(r.count.requests for r in rows)
    hits = sum(r.count.hits for r in rows)
    rate = f", hit rate {hits / requests:.0%}" if requests else ""
    held = sum(1 for r in rows if r.held_by)
    return f"{name}: {len(rows)} model(s) asked for, {held} loaded now, {requests} request(s){rate}"


def _model_cells(row: ModelRow) -> list[str]:
    count = row.count
    return [
        count.model_id,
        f"{row.held_by} replica(s)",
        str(count.requests),
        "-" if count.hit_rate is None else f"{count.hit_rate:.0%}",
        str(count.misses),
        str(count.evictions),
        str(count.errors),
        "-" if count.mean_load_s is None else f"{count.mean_load_s * 1000:.0f} ms",
        format_bytes(count.nbytes),
    ]


def models_text(rows: list[ModelRow], name: str) -> str:
    lines = [models_headline(rows, name)]
    lines += ["  " + " | ".join(_model_cells(r)) for r in rows]
    return "\n".join(lines)


def models_table(rows: list[ModelRow]) -> str:
    return _table(MODEL_HEAD, [_model_cells(r) for r in rows]) if rows else ""


def models_html(rows: list[ModelRow], name: str) -> str:
    return f"<b>{escape(models_headline(rows, name))}</b>" + models_table(rows)


TIMELINE_HEAD = ["replica", "process start", "weights", "from", "constructor", "first request at"]


def _timeline_cells(row: str, phases: list[Phase]) -> list[str]:
    by_phase = {p.phase.split(" (")[0]: p for p in phases}
    weights = by_phase.get("weights")
    first = by_phase.get("until first request")

    def seconds(name: str) -> str:
        phase = by_phase.get(name)
        return "-" if phase is None else f"{phase.seconds:.2f} s"

    return [
        row,
        seconds("process start"),
        seconds("weights"),
        "-" if weights is None else weights.phase.split("(")[1].rstrip(")") + ": " + weights.detail.split(" from ")[0],
        seconds("constructor"),
        "-" if first is None else f"{first.start_s + first.seconds:.2f} s",
    ]


def _timeline_rows(phases: list[Phase]) -> list[list[str]]:
    rows = list(dict.fromkeys(p.replica for p in phases))
    return [_timeline_cells(row, [p for p in phases if p.replica == row]) for row in rows]


def timeline_text(phases: list[Phase], name: str) -> str:
    rows = _timeline_rows(phases)
    return "\n".join([f"{name}: {len(rows)} replica start(s)", *("  " + " | ".join(r) for r in rows)])


def timeline_html(phases: list[Phase], name: str) -> str:
    rows = _timeline_rows(phases)
    return f"<b>{escape(name)}: {len(rows)} replica start(s)</b>" + (_table(TIMELINE_HEAD, rows) if rows else "")


def _per_move(plan: Plan) -> str:
    return f"${saving_per_move(plan):.2f}/h per move" if plan.moves else "no moves"


def _freed_cost(report: CompactionReport) -> float:
    """Cost of the nodes actually freed (a stopped compaction frees fewer than planned)."""
    planned = len(report.plan.nodes_to_free)
    return report.plan.freed_cost_per_hour * len(report.nodes_freed) / planned if planned else 0.0


def _stats(stats: LatencyStats) -> str:
    sent, failed, p50, p99 = _stats_cells(stats)
    return f"{sent} sent, {failed} failed, p50 {p50} ms, p99 {p99} ms"


def _stats_cells(stats: LatencyStats) -> list[str]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return [str(stats.requests), str(stats.failed), ms(stats.p50_ms), ms(stats.p99_ms)]


LISTED = 10  # rows of a plan's moves and stays shown at once; the rest fold away
FOLDED = 200  # rows behind the fold, at most: a 1000-node plan's list stays a page, not a book


def _first(lines: list[str], noun: str) -> list[str]:
    """The first LISTED ``lines`` and a line counting the rest."""
    more = len(lines) - LISTED
    return lines[:LISTED] + ([f"  ... and {more} more {noun}"] if more > 0 else [])


def _listed(head: list[str], rows: list[list[str]], noun: str) -> str:
    """A table of the first LISTED ``rows``; the next FOLDED behind a "and N more" fold."""
    shown = _table(head, rows[:LISTED])
    rest = rows[LISTED:]
    if not rest:
        return shown
    unlisted = len(rest) - FOLDED
    tail = f"<br><i>and {unlisted} more not listed</i>" if unlisted > 0 else ""
    return shown + f"<details><summary>and {len(rest)} more {escape(noun)}</summary>{_table(head, rest[:FOLDED])}{tail}</details>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th {CELL}>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td {CELL}>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {TABLE}><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"
