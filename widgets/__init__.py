"""Live views of a cluster in the notebook: ClusterView, CompactionPanel, LoadProgressView, ModelsView, TimelineView.

>>> from servelab.widgets import ClusterView
>>> ClusterView()          # refreshes itself; %servelab view does the same
"""

from servelab.widgets.cluster_view import ClusterView
from servelab.widgets.compaction_panel import CompactionPanel
from servelab.widgets.load_progress import LoadProgressView
from servelab.widgets.models_view import ModelsView
from servelab.widgets.timeline_view import TimelineView

__all__ = ["ClusterView", "CompactionPanel", "LoadProgressView", "ModelsView", "TimelineView"]
