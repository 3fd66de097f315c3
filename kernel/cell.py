"""The class a ``%%deploy`` cell defines: run the cell in the user's namespace, pick the class."""

from __future__ import annotations

import ast
from typing import Any

from servelab.errors import DeploymentError


def defined_classes(source: str) -> list[str]:
    """Names of the classes ``source`` defines at its top level, in order; a clear error for bad syntax."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise DeploymentError(f"the cell does not parse: {exc.msg} (line {exc.lineno}); fix it and run it again.") from None
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def class_from_cell(source: str, namespace: dict[str, Any], name: str, chosen: str | None) -> type:
    """Run ``source`` in ``namespace`` and return the class to deploy: ``chosen``, or the last one defined."""
    classes = defined_classes(source)
    if not classes:
        raise DeploymentError(
            f"the %%deploy {name} cell defines no class; write the replica class in the cell "
            "(class Model: def __init__(self, weights): ...; async def __call__(self, request): ...)."
        )
    if chosen is not None and chosen not in classes:
        raise DeploymentError(f"--class {chosen}: the cell defines {', '.join(classes)}; pick one of those.")
    try:
        exec(compile(source, f"<%%deploy {name}>", "exec"), namespace)
    except Exception as exc:
        raise DeploymentError(f"the cell raised {type(exc).__name__}: {exc}; fix it and run it again.") from None
    target = namespace[chosen or classes[-1]]
    if not isinstance(target, type):
        raise DeploymentError(f"{chosen or classes[-1]} is not a class after the cell ran; do not rebind its name.")
    return target
