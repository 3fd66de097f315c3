"""plotly figures of a cluster: one horizontal stacked bar per node and resource, coloured by deployment."""

from __future__ import annotations

from typing import Any

from servelab.serving.snapshot import Snapshot
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
    resources_of,
    segments,
)

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
    import plotly.graph_objects as go

    parts = segments(snapshot)
    columns = resources_of(snapshot)
    order = nodes or _rows(snapshot)
    holders = sorted({s.holder for s in parts}, key=lambda h: (h in FIXED, list(FIXED).index(h) if h in FIXED else 0, h))
    palette = palette or deployment_colours(snapshot)
    traces = []
    in_legend: set[str] = set()
    for column, resource in enumerate(columns, start=1):
        axes = {"xaxis": f"x{column if column > 1 else ''}", "yaxis": f"y{column if column > 1 else ''}"}
        # An empty bar per row keeps every node a row in every column (the head has no GPU, say).
        traces.append(go.Bar(y=order, x=[0] * len(order), orientation="h", showlegend=False, hoverinfo="skip", **axes))
        for holder in holders:
            mine = {s.node: s for s in parts if s.resource == resource and s.holder == holder}
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
    columns = resources_of(snapshot)
    rows = _rows(snapshot)
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


def _rows(snapshot: Snapshot) -> list[str]:
    return [node_label(n) for n in sorted(snapshot.nodes, key=lambda n: (not n.head, n.type, n.id))]


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
