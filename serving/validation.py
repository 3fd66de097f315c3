"""Checks of what a caller passes (names, counts, amounts, scaling), each with the message that names the fix.

>>> check_count("clf", "replicas", 2, minimum=0)    # -1 raises: 'clf': replicas=-1 must be a non-negative integer.
"""

from __future__ import annotations

from typing import Any

from servelab.errors import DeploymentError


def check_name(name: Any, hint: str = "") -> None:
    """A deployment's name: non-empty, no '/' (it becomes a route and a key prefix)."""
    if not isinstance(name, str) or not name or "/" in name:
        raise DeploymentError(f"name={name!r}: give a non-empty name without '/'{hint}.")


def check_amount(name: str, label: str, value: Any) -> None:
    """A resource amount: a non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise DeploymentError(f"{name!r}: {label}={value!r} must be a non-negative number.")


def check_count(name: str, label: str, value: Any, minimum: int) -> None:
    """A count of 0 (or 1) and up."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "non-negative" if minimum == 0 else "positive"
        raise DeploymentError(f"{name!r}: {label}={value!r} must be a {kind} integer.")


def check_scaling(name: str, replicas: Any, autoscaling: Any) -> None:
    """A replica count, or an autoscaling config instead."""
    if autoscaling is not None and not isinstance(autoscaling, dict):
        raise DeploymentError(f"{name!r}: autoscaling must be a dict like {{'min_replicas': 1, 'max_replicas': 4}}.")
    if autoscaling is None:
        check_count(name, "replicas", replicas, minimum=0)
