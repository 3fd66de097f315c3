"""What magics return: small objects the next cell can use, each with a rich repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from servelab.loader.progress import format_bytes, format_rate
from servelab.serving.deployments import WeightLoad
from servelab.serving.replica_weights import PEER, REMOTE
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
        return f"; {weights_line(self.loads)}" if self.loads else ""

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


def weights_line(loads: list[WeightLoad]) -> str:
    """The weights' size and rate per source, how often the source was read, apart from how long
    each replica waited for them (a weight holder's start, the peer cache's lookup).

    A copy from peers is no faster than the source on one machine (both are loopback): what it saves
    is the source's reads and the network, which the line says where the figures would suggest otherwise.

    >>> weights_line(loads)
    'weights 67.1 MB per replica: 1.20 GB/s from the source (1 replica), 3.10 GB/s from peers (3 replicas): the source read once for 4 replicas; 0.9-4.1 s each with start-up'
    """
    rates: list[str] = []
    speed: dict[str, float] = {}
    for source, label in ((REMOTE, "the source"), (PEER, "peers")):
        mine = [w for w in loads if w.source == source]
        if mine:
            moved, seconds = sum(w.nbytes for w in mine), sum(w.stream_s for w in mine)
            speed[source] = moved / seconds if seconds else 0.0
            rates.append(f"{format_rate(moved, seconds)} from {label} ({len(mine)} replica{'s' if len(mine) > 1 else ''})")
    line = f"weights {format_bytes(max(w.nbytes for w in loads))} per replica: {', '.join(rates)}"
    if len(speed) == 2:
        reads = sum(1 for w in loads if w.source == REMOTE)
        line += f": the source read {'once' if reads == 1 else f'{reads} times'} for {len(loads)} replicas"
        if speed[PEER] < speed[REMOTE]:
            line += " (a copy from peers is not faster on one machine; it spares the source's reads and the network)"
    low, high = (f"{s:.1f}" for s in (min(w.seconds for w in loads), max(w.seconds for w in loads)))
    return f"{line}; {low if low == high else f'{low}-{high}'} s each with start-up"


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
