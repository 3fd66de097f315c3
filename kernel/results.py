"""What magics return: small objects the next cell can use, each with a rich repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from servelab.loader.progress import format_bytes, format_rate
from servelab.serving.deployments import WeightLoad
from servelab.serving.snapshot import DeploymentInfo, format_resources


@dataclass
class Deployed:
    """A deployment ``%%deploy`` started: its handle, URL, state and how its replicas loaded weights.

    >>> classifier = _                       # the %%deploy cell's result
    >>> await classifier.handle.remote(x)     # or: requests.get(classifier.url)
    """

    info: DeploymentInfo
    url: str | None
    handle: Any
    loads: list[WeightLoad] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info.name

    def _loads_text(self) -> str:
        if not self.loads:
            return ""
        times = ", ".join(f"{w.seconds:.2f} s" for w in self.loads)
        seconds = sum(w.seconds for w in self.loads)
        return f"; {format_bytes(self.loads[0].nbytes)} of weights streamed in {times} ({format_rate(sum(w.nbytes for w in self.loads), seconds)} per replica)"

    def __repr__(self) -> str:
        i = self.info
        return (
            f"{i.app}/{i.name}: {i.status}, {i.running_replicas}/{i.target_replicas} replica(s) of "
            f"{format_resources(i.resources) or 'no resources'}{self._loads_text()} - {self.url or 'no HTTP route'}"
        )

    def _repr_html_(self) -> str:
        link = f'<a href="{escape(self.url)}" target="_blank">{escape(self.url)}</a>' if self.url else "no HTTP route"
        i = self.info
        return (
            f"<div><b>{escape(i.app)}/{escape(i.name)}</b>: {escape(i.status)}, "
            f"{i.running_replicas}/{i.target_replicas} replica(s) of {escape(format_resources(i.resources) or 'no resources')}"
            f"{escape(self._loads_text())} &middot; {link}</div>"
        )


@dataclass
class Streamed:
    """What ``%stream`` loaded: the state dict and how fast it came."""

    uri: str
    state: dict[str, Any]
    nbytes: int
    seconds: float
    into: str | None = None

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9 if self.seconds else 0.0

    def __repr__(self) -> str:
        where = f" into {self.into}" if self.into else ""
        return (
            f"streamed {len(self.state)} tensors, {format_bytes(self.nbytes)} in {self.seconds:.2f} s "
            f"({format_rate(self.nbytes, self.seconds)}){where} from {self.uri}"
        )

    def _repr_html_(self) -> str:
        return f"<div>{escape(repr(self))}</div>"
