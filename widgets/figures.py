"""plotly figures of a cluster: one horizontal stacked bar per node and resource, coloured by deployment."""

from __future__ import annotations

import zlib
from typing import Any

from servelab.serving.snapshot import Snapshot
from servelab.widgets.model import FREE, OTHER, STRANDED, Segment, node_label, resources_of, segments

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#72B7B2", "#EECA3B", "#FF9DA6", "#9D755D", "#E45756", "#79706E")
FIXED = {OTHER: "#BAB0AC", STRANDED: "#D62728", FREE: "#EEEEEE"}
UNITS = {"GPU": "GPU", "CPU": "CPU", "memory": "GiB"}


def colour(holder: str) -> str:
    """A stable colour per deployment (the same in every figure and every refresh)."""
    return FIXED.get(holder) or PALETTE[zlib.crc32(holder.encode()) % len(PALETTE)]


def cluster_traces(snapshot: Snapshot, legend: bool = True, column_offset: int = 0, nodes: list[str] | None = None) -> list[Any]:
    """Bar traces for ``snapshot``: one per holder and resource column, in subplot column order."""
    import plotly.graph_objects as go

    parts = segments(snapshot)
    columns = resources_of(snapshot)
    order = nodes or _rows(snapshot)
    holders = sorted({s.holder for s in parts}, key=lambda h: (h in FIXED, list(FIXED).index(h) if h in FIXED else 0, h))
    traces = []
    for column, resource in enumerate(columns, start=1 + column_offset):
        for holder in holders:
            mine = {s.node: s for s in parts if s.resource == resource and s.holder == holder}
            if not mine:
                continue
            rows = [n for n in order if n in mine]
            traces.append(
                go.Bar(
                    name=holder,
                    legendgroup=holder,
                    showlegend=legend and column == 1 + column_offset,
                    orientation="h",
                    y=rows,
                    x=[mine[n].fraction for n in rows],
                    customdata=[_amount(mine[n]) for n in rows],
                    hovertemplate=f"%{{y}}<br>{holder}: %{{customdata}}<extra>{resource}</extra>",
                    marker={"color": colour(holder), "line": {"width": 0}},
                    xaxis=f"x{column if column > 1 else ''}",
                    yaxis=f"y{column if column > 1 else ''}",
                )
            )
    return traces


def cluster_layout(snapshot: Snapshot, title: str = "", height: int | None = None) -> dict[str, Any]:
    """Axes for ``cluster_traces``: a column per resource, nodes as rows, fractions from 0 to 1."""
    columns = resources_of(snapshot)
    rows = _rows(snapshot)
    layout: dict[str, Any] = {
        "barmode": "stack",
        "title": {"text": title, "x": 0.01, "font": {"size": 14}},
        "height": height or 90 + 34 * max(1, len(rows)),
        "margin": {"l": 10, "r": 10, "t": 40 if title else 24, "b": 30},
        "legend": {"orientation": "h", "y": -0.12 if len(rows) > 3 else -0.3, "x": 0},
        "plot_bgcolor": "white",
        "bargap": 0.25,
    }
    width = 1.0 / max(1, len(columns))
    for index, resource in enumerate(columns, start=1):
        suffix = "" if index == 1 else str(index)
        layout[f"xaxis{suffix}"] = {
            "domain": [(index - 1) * width + 0.02, index * width - 0.02],
            "range": [0, 1],
            "tickformat": ".0%",
            "title": {"text": resource, "standoff": 2},
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
