"""Bounded retries with exponential backoff for transient read errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from servelab.errors import SourceReadError

log = logging.getLogger("servelab.loader")
T = TypeVar("T")


class TransientReadError(Exception):
    """A read failed in a way that may succeed when tried again (reset connection, HTTP 5xx, timeout)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient read errors are retried."""

    attempts: int = 4
    backoff_s: float = 0.2
    max_backoff_s: float = 2.0

    def delays(self) -> list[float]:
        """Sleep before each retry: doubling from ``backoff_s``, capped at ``max_backoff_s``."""
        return [min(self.backoff_s * 2**i, self.max_backoff_s) for i in range(self.attempts - 1)]


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """Call ``fn``; on TransientReadError sleep and retry, then raise SourceReadError naming ``what``."""
    for delay in [*policy.delays(), None]:
        try:
            return fn()
        except TransientReadError as exc:
            if delay is None:
                raise SourceReadError(
                    f"{what}: {exc} (gave up after {policy.attempts} attempts). "
                    "Check that the storage is reachable and serving, then retry."
                ) from exc
            log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
