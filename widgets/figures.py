"""plotly figures of a cluster: one horizontal stacked bar per node and resource, coloured by deployment."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from servelab.serving.fragmentation import stranded_by_node
from servelab.serving.snapshot import Node, Snapshot
from servelab.widgets.model import (
    FIXED,
    FREE,
    OTHER,
    PHASES,
    STRANDED,
    Phase,
    Segment,
    deployment_colours,
    node_label,
    node_segments,
    ordered_nodes,
    resources_of,
    segments,
)
from servelab.widgets.overview import Overview, folded

NAMES = {OTHER: "used by Ray/Serve", STRANDED: "stranded (no replica shape fits)", FREE: "free"}
UNITS = {"GPU": "GPU", "CPU": "CPU", "memory": "GiB"}
COLUMN_GAP = 0.1


def figure_widget(figure: Any = None) -> Any:
    """A plotly FigureWidget for a view, of a finished ``figure`` (or empty, for a view that draws
    later): hover for the figures, no toolbar (it sat over the legend; these views are read, not zoomed)."""
    import plotly.graph_objects as go

    widget = go.FigureWidget(figure)
    widget._config = {"displayModeBar": False}
    return widget


def cluster_traces(
    snapshot: Snapshot, legend: bool = True, nodes: list[str] | None = None, palette: dict[str, str] | None = None
) -> list[Any]:
    """Bar traces for ``snapshot``: one per holder and resource column, every node a row in every column."""
    order = nodes or _rows(snapshot)
    return bar_traces(segments(snapshot), resources_of(snapshot), order, palette or deployment_colours(snapshot), legend)


def bar_traces(
    parts: list[Segment], columns: list[str], order: list[str], palette: dict[str, str], legend: bool = True
) -> list[Any]:
    """Stacked bars of ``parts``: a column per resource, a row per label in ``order`` (a node or a node
    type), a trace per holder, each holder once in the legend."""
    import plotly.graph_objects as go

    holders = sorted({s.holder for s in parts}, key=lambda h: (h in FIXED, list(FIXED).index(h) if h in FIXED else 0, h))
    by_holder: dict[tuple[str, str], dict[str, Segment]] = {}
    for s in parts:
        by_holder.setdefault((s.resource, s.holder), {})[s.node] = s
    traces = []
    in_legend: set[str] = set()
    for column, resource in enumerate(columns, start=1):
        axes = {"xaxis": f"x{column if column > 1 else ''}", "yaxis": f"y{column if column > 1 else ''}"}
        # An empty bar per row keeps every row in every column (the head has no GPU, say).
        traces.append(go.Bar(y=order, x=[0] * len(order), orientation="h", showlegend=False, hoverinfo="skip", **axes))
        for holder in holders:
            mine = by_holder.get((resource, holder))
            if not mine:
                continue
            rows = [n for n in order if n in mine]
            shown = legend and holder not in in_legend
            in_legend.add(holder)
            traces.append(
                go.Bar(
                    name=NAMES.get(holder, holder),
                    legendgroup=holder,
                    showlegend=shown,
                    orientation="h",
                    y=rows,
                    x=[mine[n].fraction for n in rows],
                    customdata=[_amount(mine[n]) for n in rows],
                    hovertemplate=f"%{{y}}<br>{NAMES.get(holder, holder)}: %{{customdata}}<extra>{resource}</extra>",
                    marker={"color": palette.get(holder, "#333"), "line": {"width": 0}},
                    **axes,
                )
            )
    return traces


def cluster_layout(snapshot: Snapshot, title: str = "", height: int | None = None) -> dict[str, Any]:
    """Axes for ``cluster_traces``: a column per resource, nodes as rows, fractions from 0 to 1."""
    return bar_layout(resources_of(snapshot), _rows(snapshot), title, height)


def bar_layout(columns: list[str], rows: list[str], title: str = "", height: int | None = None) -> dict[str, Any]:
    """Axes for ``bar_traces``: a column per resource, ``rows`` top to bottom, fractions from 0 to 1."""
    layout: dict[str, Any] = {
        "barmode": "stack",
        "title": {"text": title, "x": 0.01, "y": 0.98, "yanchor": "top", "font": {"size": 14}},
        "height": height or 150 + 34 * max(1, len(rows)),
        "margin": {"l": 10, "r": 10, "t": 70, "b": 40},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
        "plot_bgcolor": "white",
        "bargap": 0.3,
    }
    width = 1.0 / max(1, len(columns))
    for index, resource in enumerate(columns, start=1):
        suffix = "" if index == 1 else str(index)
        layout[f"xaxis{suffix}"] = {
            "domain": [(index - 1) * width + COLUMN_GAP / 2, index * width - COLUMN_GAP / 2],
            "range": [0, 1],
            "tickvals": [0, 0.5, 1],
            "ticktext": ["0", "50%", "100%"],
            "title": {"text": resource, "standoff": 4},
            "gridcolor": "#DDD",
        }
        layout[f"yaxis{suffix}"] = {
            "anchor": f"x{suffix}",
            "categoryorder": "array",
            "categoryarray": list(reversed(rows)),
            "showticklabels": index == 1,
            "automargin": True,
        }
    return layout


def cluster_figure(snapshot: Snapshot, title: str = "") -> Any:
    """A static plotly Figure of ``snapshot`` (for reports and where no widget frontend runs)."""
    import plotly.graph_objects as go

    return go.Figure(data=cluster_traces(snapshot), layout=cluster_layout(snapshot, title))


CELLS_PER_ROW = 50  # nodes per row of the cell map: 1000 nodes in about 20 rows
CELL_PX = 16  # a cell map row
STATE_LINES = {"draining": "#F58518", "freed": "#1B7F3B", "head": "#555555"}


def overview_figure(view: Overview, columns: list[str], title: str = "") -> Any:
    """A row of bars per node type: what each shown deployment holds of the type's resources, the other
    deployments together, stranded and free."""
    import plotly.graph_objects as go

    rows = [g.label for g in view.groups]
    parts = [s for g in view.groups for s in g.segments]
    return go.Figure(bar_traces(parts, columns, rows, view.colours), bar_layout(columns, rows, title))


def planned_overview(now: Overview, after: Overview, columns: list[str], title: str = "") -> Any:
    """Each node type now and after the plan, one row above the other, in the same colours."""
    import plotly.graph_objects as go

    later = {g.type: g for g in after.groups}
    rows: list[str] = []
    parts: list[Segment] = []
    for group in now.groups:
        left = later.get(group.type)  # a type whose every node is freed has no group after
        for row, source in (
            (f"{group.type} now: {group.nodes}", group),
            (f"{group.type} after: {left.nodes if left else 0}", left),
        ):
            rows.append(row)
            parts += [replace(s, node=row) for s in (source.segments if source else ())]
    return go.Figure(bar_traces(parts, columns, rows, now.colours), bar_layout(columns, rows, title))


def detail_figure(snapshot: Snapshot, nodes: list[Node], view: Overview, title: str = "") -> Any:
    """Per-node bars of ``nodes`` (the ones a person picked), in the overview's colours."""
    import plotly.graph_objects as go

    strand = stranded_by_node(snapshot)
    columns = resources_of(snapshot)
    parts = folded([s for n in nodes for s in node_segments(snapshot, n, strand, columns)], set(view.shown))
    rows = [node_label(n) for n in nodes]
    # No legend: the overview above it holds the same colours.
    return go.Figure(bar_traces(parts, columns, rows, view.colours, legend=False), bar_layout(columns, rows, title))


def cell_map(view: Overview, title: str = "") -> Any:
    """A cell per node, grouped by type: darker for fuller, a red dot where capacity is stranded, a
    green cross where the plan frees the node, an orange frame while it drains; hover for the node."""
    import plotly.graph_objects as go

    x: list[int] = []
    y: list[float] = []
    annotations = []
    top = 0.0
    for group in view.groups:
        mine = [c for c in view.cells if c.type == group.type]
        freed = f", {group.freed} freed by the plan" if group.freed else ""
        text = f"<b>{group.label}</b>: {group.in_use} in use, {group.idle} idle{freed}, ${group.cost_per_hour:,.0f}/h"
        annotations.append({"x": -0.6, "y": top, "text": text, "showarrow": False, "xanchor": "left", "font": {"size": 11}})
        top += 1
        for index in range(len(mine)):
            x.append(index % CELLS_PER_ROW)
            y.append(top + index // CELLS_PER_ROW)
        top += -(-len(mine) // CELLS_PER_ROW) + 0.5
    cells = [c for g in view.groups for c in view.cells if c.type == g.type]
    base = go.Scatter(
        x=x, y=y, mode="markers", showlegend=False, text=[c.title for c in cells], hovertemplate="%{text}<extra></extra>",
        marker={
            "symbol": "square", "size": CELL_PX - 4, "color": [c.colour for c in cells],
            "line": {"color": [STATE_LINES.get(c.state, "#BBBBBB") for c in cells], "width": [2 if c.state in STATE_LINES else 0.5 for c in cells]},
        },
    )  # fmt: skip
    marks = [
        ("stranded capacity", [i for i, c in enumerate(cells) if c.stranded > 0], {"symbol": "circle", "size": 5, "color": "#D62728"}),
        ("freed by the plan", [i for i, c in enumerate(cells) if c.state == "freed"], {"symbol": "x-thin", "size": 9, "line": {"color": "#1B7F3B", "width": 2}}),
        ("draining", [i for i, c in enumerate(cells) if c.state == "draining"], {"symbol": "square-open", "size": CELL_PX - 2, "color": "#F58518"}),
    ]  # fmt: skip
    traces = [base] + [
        go.Scatter(x=[x[i] for i in chosen], y=[y[i] for i in chosen], mode="markers", name=name, marker=marker, hoverinfo="skip")
        for name, chosen, marker in marks
        if chosen
    ]
    layout = {
        "title": {"text": title, "x": 0.01, "y": 0.98, "yanchor": "top", "font": {"size": 14}},
        "height": 90 + int(CELL_PX * top),
        "width": 60 + CELL_PX * CELLS_PER_ROW,
        "margin": {"l": 10, "r": 10, "t": 60 if title else 30, "b": 10},
        "xaxis": {"visible": False, "range": [-0.7, CELLS_PER_ROW - 0.3]},
        "yaxis": {"visible": False, "range": [top, -0.7]},
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
        "plot_bgcolor": "white",
        "annotations": annotations,
    }
    return go.Figure(traces, layout)


def _rows(snapshot: Snapshot) -> list[str]:
    return [node_label(n) for n in ordered_nodes(snapshot)]


def _amount(segment: Segment) -> str:
    amount = segment.amount / 2**30 if segment.resource == "memory" else segment.amount
    return f"{amount:g} {UNITS.get(segment.resource, segment.resource)}"


PHASE_COLOURS = dict(zip(PHASES, ("#F2CF5B", "#BBBBBB", "#E45756", "#54A24B", "#4C78A8", "#EEEEEE"), strict=True))


def timeline_figure(phases: list[Phase], title: str = "") -> Any:
    """A Gantt chart of replica starts: one row per replica, one bar per phase."""
    import plotly.graph_objects as go

    rows = list(dict.fromkeys(p.replica for p in phases))
    figure = go.Figure()
    for name in PHASES:
        mine = [p for p in phases if p.phase == name]
        if mine:
            figure.add_trace(
                go.Bar(
                    name=name,
                    y=[p.replica for p in mine],
                    x=[p.seconds for p in mine],
                    base=[p.start_s for p in mine],
                    orientation="h",
                    marker={"color": PHASE_COLOURS[name], "line": {"color": "#888", "width": 0.5}},
                    customdata=[[p.detail, p.start_s + p.seconds] for p in mine],
                    hovertemplate="%{y}: " + name + " %{x:.2f} s (to %{customdata[1]:.2f} s)<br>%{customdata[0]}<extra></extra>",
                )
            )
    figure.update_layout(
        title=title,
        barmode="overlay",
        height=120 + 34 * len(rows),
        margin={"l": 10, "r": 10, "t": 70 if title else 40, "b": 40},
        xaxis={"title": "seconds since the first replica was scheduled", "rangemode": "tozero"},
        yaxis={"categoryorder": "array", "categoryarray": rows[::-1], "automargin": True},
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
        template="plotly_white",
    )
    return figure
