"""How servelab's results show in a notebook: HTML and text summaries for Snapshot, Plan and
CompactionReport, and a current Plan as its CompactionPanel, so that ``%compact --dry-run`` returns
the Plan itself (``plan.nodes_to_free`` works, ``serving.compact(plan)`` runs it) and still shows the
before/after figures and a Compact button that runs exactly that plan, within its budget."""

from __future__ import annotations

from typing import Any

from servelab.errors import ServelabError


def register_reprs(ipython: Any) -> None:
    """Register the summaries, and the panel for plans, with ``ipython``'s display formatters."""
    from servelab.serving import CompactionReport, Plan, Snapshot
    from servelab.widgets import summary

    formatters = ipython.display_formatter.formatters
    for kind, html, text in (
        (Snapshot, summary.snapshot_html, summary.snapshot_text),
        (Plan, summary.plan_html, summary.plan_text),
        (CompactionReport, summary.report_html, summary.report_text),
    ):
        formatters["text/html"].for_type(kind, html)
        formatters["text/plain"].for_type(kind, lambda value, printer, cycle, text=text: printer.text(text(value)))
    ipython.display_formatter.mimebundle_formatter.for_type(
        Plan, lambda plan, include=None, exclude=None: plan_panel(ipython, plan)
    )


def plan_panel(ipython: Any, plan: Any) -> dict[str, Any] | None:
    """The CompactionPanel's bundle for ``plan`` while it is current on this kernel's cluster; None
    (the plan's HTML then) for a plan of a cluster that changed or that this kernel cannot read."""
    from servelab import serving
    from servelab.kernel.magics import ServelabMagics, deployment_urls
    from servelab.widgets import CompactionPanel
    from servelab.widgets.compaction_panel import compaction_probe

    try:
        snap = serving.snapshot()
    except ServelabError:
        return None
    if snap.fingerprint() != plan.fingerprint:
        return None
    magics = ipython.magics_manager.registry.get(ServelabMagics.__name__)
    probe = magics is None or magics.probe_requests
    urls = deployment_urls() if probe else []
    bundle: dict[str, Any] = CompactionPanel(snap, plan, probe=compaction_probe(urls))._repr_mimebundle_()
    return bundle
