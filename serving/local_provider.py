"""Ray's fake multi-node provider, which the autoscaling embedded cluster's autoscaler launches and
terminates raylets with, with one change: its nodes get random ids.

Ray's provider numbers its nodes ``ffff...00001``, ``ffff...00002``: ids that differ in their last
digits alone, where every view shows an id's first eight characters. Everything else is Ray's.
This module is imported by the autoscaler's monitor process, not by servelab itself.
"""

from __future__ import annotations

import secrets

from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class LocalNodeProvider(FakeMultiNodeProvider):
    """Ray's ``FakeMultiNodeProvider`` with node ids as random as real ones."""

    def _next_hex_node_id(self) -> str:
        return secrets.token_hex(28)
