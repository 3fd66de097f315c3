"""The sidebar's types as schema.ts declares them (generated from jupyter_ext/schema.py), read from the
TypeScript source, and a check that a JSON answer of the server has every field they declare, of the
declared kind: an answer built other than its declaration fails the test instead of breaking the
sidebar at run time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SCHEMA_TS = Path(__file__).resolve().parents[2] / "jupyter_ext" / "src" / "schema.ts"


def declared_types(source: str | None = None) -> dict[str, str]:
    """Interface name -> its body (``{ ... }``), comments removed."""
    text = source if source is not None else SCHEMA_TS.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    types = {}
    for match in re.finditer(r"export interface (\w+) \{", text):
        start = match.end() - 1
        types[match.group(1)] = text[start : _closing(text, start) + 1]
    return types


def _closing(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += 1 if text[i] == "{" else -1 if text[i] == "}" else 0
        if depth == 0:
            return i
    raise ValueError("unbalanced braces in schema.ts")


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside braces, brackets and angle brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += 1 if char in "{<([" else -1 if char in "}>)]" else 0
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def _fields(body: str) -> list[tuple[str, bool, str]]:
    """(name, optional, type) of an object type's ``{ ... }`` body."""
    fields = []
    for entry in _split(body.strip()[1:-1], ";"):
        name, _, kind = entry.partition(":")
        fields.append((name.strip().rstrip("?"), name.strip().endswith("?"), kind.strip()))
    return fields


def check(value: Any, kind: str, types: dict[str, str], path: str = "$") -> list[str]:
    """Where ``value`` departs from the TypeScript type ``kind``: a list of 'path: what' (empty: it matches)."""
    members = _split(kind, "|")
    if len(members) > 1:
        results = [check(value, member, types, path) for member in members]
        return [] if any(not r for r in results) else [f"{path}: {value!r:.60} is none of {kind}"]
    kind = members[0]
    simple = {"number": (int, float), "string": (str,), "boolean": (bool,)}
    if kind == "null":
        return [] if value is None else [f"{path}: expected null"]
    if kind in simple:
        ok = isinstance(value, simple[kind]) and not (kind == "number" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {kind}, got {type(value).__name__}"]
    if kind.startswith("'"):
        return [] if value == kind.strip("'") else [f"{path}: expected {kind}, got {value!r}"]
    if kind.endswith("[]"):
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        return [problem for i, item in enumerate(value) for problem in check(item, kind[:-2], types, f"{path}[{i}]")]
    if kind.startswith("[") and kind.endswith("]"):  # a tuple
        members = _split(kind[1:-1], ",")
        if not isinstance(value, list) or len(value) != len(members):
            return [f"{path}: expected a list of {len(members)}"]
        return [
            problem
            for i, (item, member) in enumerate(zip(value, members, strict=True))
            for problem in check(item, member, types, f"{path}[{i}]")
        ]
    if kind.startswith("Record<string,"):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        inner = kind[len("Record<string,") : -1].strip()
        return [problem for key, item in value.items() for problem in check(item, inner, types, f"{path}.{key}")]
    if kind.startswith("{"):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        problems = []
        for name, optional, field_kind in _fields(kind):
            if name not in value:
                problems += [] if optional else [f"{path}.{name}: missing (declared in schema.ts)"]
            else:
                problems += check(value[name], field_kind, types, f"{path}.{name}")
        return problems
    if kind in types:
        return check(value, types[kind], types, path)
    raise ValueError(f"{path}: schema.ts type {kind!r} is not understood by this check")


def drift(value: Any, interface: str) -> list[str]:
    """``check`` against the interface named ``interface`` in schema.ts."""
    types = declared_types()
    return check(value, types[interface], types)
