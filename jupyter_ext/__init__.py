"""The JupyterLab face of servelab: an authenticated server API over the clusters, and the sidebar.

The server extension (``servelab`` in ``jupyter server extension list``) serves ``/servelab/api/*``
from one ClusterManager; the sidebar (TypeScript in ``src/``, built into ``labextension/`` by the
package build) draws what those routes answer. Settings are traitlets of ``c.Servelab``. The
driver processes end with the server: each reads requests from a pipe the server holds.

    jupyter lab --Servelab.address=10.0.0.2:6379
"""

from __future__ import annotations

from typing import Any

from servelab.jupyter_ext.handlers import routes
from servelab.jupyter_ext.manager import ClusterManager, Servelab

__all__ = ["ClusterManager", "Servelab", "load_jupyter_server_extension"]


def load_jupyter_server_extension(server_app: Any) -> None:
    """Add the routes and one ClusterManager (``web_app.settings["servelab_manager"]``) to a Jupyter server."""
    manager = ClusterManager(Servelab(parent=server_app), server_app.log)
    web_app = server_app.web_app
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"], manager))
    web_app.settings["servelab_manager"] = manager
    server_app.log.info("servelab: API at %sservelab/api/", web_app.settings["base_url"])


_load_jupyter_server_extension = load_jupyter_server_extension
