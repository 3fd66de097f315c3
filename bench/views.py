"""What watching a large cluster costs: the views at 10, 100 and 1000 nodes, and snapshots per raylet.

    python -m bench.views [--nodes 10 100 1000] [--raylets 2 4 8 16] [--no-live] [--no-browser]

Pure part (synthetic clusters from ``servelab.testing.clusters.many_deployments_cluster``: three node
types, 42 deployments, fragmented so that a plan frees many nodes; no Ray): for each size,

- ClusterView and the CompactionPanel: seconds to build the widget (the figures included), and
  seconds for plotly.js to draw its figures in headless Chromium (``Plotly.newPlot``, plotly's own
  bundle); for 1000 nodes also the per-node bars the views drew before they summarised;
- the sidebar's model (``cluster_model``): seconds to build, JSON bytes, and with a node type picked.

Live part (``--raylets``): an embedded cluster grown to each raylet count, one 0.5-GPU replica per
raylet (so every raylet is asked its per-GPU view), ``snapshot()`` and ``quick_snapshot()`` timed
(median of 7), and the cost per added raylet fitted by least squares, with what a 1000-node cluster
would cost by that line.

Targets (issue 25): at 1000 nodes each view draws in under 1 s and the sidebar's model is under 200 kB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servelab.jupyter_ext.model import cluster_model
from servelab.serving.planner import plan
from servelab.testing.clusters import many_deployments_cluster
from servelab.widgets import ClusterView, CompactionPanel
from servelab.widgets.figures import cluster_figure

ROUNDS = 7


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


class Drawer:
    """plotly.js in headless Chromium: ``seconds(figures)`` is how long ``Plotly.newPlot`` takes for them."""

    def __init__(self) -> None:
        os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
        import plotly
        from playwright.sync_api import sync_playwright

        from servelab.testing.lab import CHROMIUM_ARGS, chromium_path

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        self._page = self._browser.new_page(viewport={"width": 1400, "height": 1000})
        bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        self._page.set_content("<html><body><div id='plots'></div></body></html>")
        self._page.add_script_tag(path=str(bundle))

    def seconds(self, figures: list[Any]) -> float:
        """Best of three draws of ``figures``, one after the other, each into a fresh div."""
        specs = [json.loads(f.to_json()) for f in figures]
        return min(
            self._page.evaluate(
                """async specs => {
                    const root = document.getElementById('plots');
                    root.replaceChildren();
                    const start = performance.now();
                    for (const spec of specs) {
                        const div = document.createElement('div');
                        root.append(div);
                        await Plotly.newPlot(div, spec.data, spec.layout, {displayModeBar: false});
                    }
                    return (performance.now() - start) / 1000;
                }""",
                specs,
            )
            for _ in range(3)
        )

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def widget_figures(widget: Any) -> list[Any]:
    """The plotly figures a view shows (its FigureWidgets, as static figures)."""
    import plotly.graph_objects as go

    found = []
    stack = [widget]
    while stack:
        item = stack.pop(0)
        if isinstance(item, go.FigureWidget) and item not in found:
            found.append(item)
        stack += list(getattr(item, "children", ()))
    return [go.Figure(f) for f in found]


def views(sizes: list[int], drawer: Drawer | None) -> None:
    ClusterView(read=lambda: many_deployments_cluster(4), autostart=False)  # imports and plotly's first figure, untimed
    print("| nodes | view | build s | draw s (Chromium) | figure px tall |")
    print("|---|---|---|---|---|")
    for size in sizes:
        snapshot = many_deployments_cluster(size, seed=1)
        chosen = plan(snapshot)
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("ClusterView", lambda s=snapshot: ClusterView(read=lambda: s, autostart=False)),
            (f"CompactionPanel (frees {len(chosen.nodes_to_free)})", lambda s=snapshot, p=chosen: CompactionPanel(s, p)),
        ]
        if size >= 1000:
            cases.append(("per-node bars (before)", lambda s=snapshot: cluster_figure(s)))
        for name, build in cases:
            seconds, built = timed(build)
            figures = [built] if not hasattr(built, "children") else widget_figures(built)
            tall = sum(int(f.layout.height or 0) for f in figures)
            drawn = f"{drawer.seconds(figures):.2f}" if drawer else "-"
            print(f"| {size} | {name} | {seconds:.2f} | {drawn} | {tall} |")
    print()
    print("| nodes | sidebar model | build s | JSON kB |")
    print("|---|---|---|---|")
    for size in sizes:
        snapshot = many_deployments_cluster(size, seed=1)
        for name, group in (("overview", None), ("with a type picked", "gpu8")):
            seconds, model = timed(lambda s=snapshot, g=group: cluster_model(s, "127.0.0.1:6379", group=g))
            print(
                f"| {size} | {name if model['overview'] else 'a card per node'} | {seconds:.3f} | {len(json.dumps(model)) / 1000:.0f} |"
            )
            if not model["overview"]:
                break


def live(raylets: list[int]) -> None:
    from servelab import serving
    from servelab.serving.reader import quick_snapshot, snapshot
    from servelab.testing import free_port
    from servelab.testing.apps import Echo

    serving.up(nodes=raylets[0], cpus_per_node=1, gpus_per_node=2, http_port=free_port())
    rows = []
    try:
        serving.deploy("probe", Echo, replicas=raylets[0], gpus=0.5, cpus=0.1)
        for count in raylets:
            while len([n for n in snapshot().nodes if not n.head]) < count:
                serving.add_node()
            serving.scale("probe", count)
            serving.wait_healthy(timeout_s=300)
            full = [timed(snapshot)[0] for _ in range(ROUNDS)]
            quick = [timed(quick_snapshot)[0] for _ in range(ROUNDS)]
            asked = sum(1 for n in snapshot().nodes if n.gpu_free is not None)
            rows.append((count, statistics.median(full), statistics.median(quick), asked))
    finally:
        serving.down()
    print("| raylets | snapshot() ms | quick_snapshot() ms | raylets asked their per-GPU view |")
    print("|---|---|---|---|")
    for count, full, quick, asked in rows:
        print(f"| {count} | {full * 1000:.1f} | {quick * 1000:.1f} | {asked} |")
    for name, index in (("snapshot()", 1), ("quick_snapshot()", 2)):
        slope, intercept = fit([r[0] for r in rows], [r[index] for r in rows])
        print(
            f"{name}: {slope * 1000:.2f} ms per added raylet (least squares over {len(rows)} counts); "
            f"by that line, 1000 raylets: {(intercept + 1000 * slope):.2f} s"
        )


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line through (xs, ys): (slope, intercept)."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    return slope, mean_y - slope * mean_x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--raylets", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--no-live", action="store_true", help="skip the embedded cluster")
    parser.add_argument("--no-browser", action="store_true", help="skip drawing in Chromium")
    args = parser.parse_args()
    drawer = None if args.no_browser else Drawer()
    try:
        views(args.nodes, drawer)
    finally:
        if drawer is not None:
            drawer.close()
    if not args.no_live:
        print()
        live(args.raylets)


if __name__ == "__main__":
    main()
