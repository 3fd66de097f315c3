"""The peer weight cache: a checkpoint streamed once from remote storage, then shared over the cluster.

The first replica that streams a checkpoint publishes its tensors to Ray's object store on its own
node, owned by a holder there (a detached CPU-less actor per node, so they outlive that replica), and
records them in a directory (a detached named actor on the head); a replica that starts later
anywhere in the cluster gets them over the cluster network instead of from remote storage.
A node compaction empties hands its copies over to a node that stays (``hand_over``), then gives
up its holder (``release_node``): an object's primary copy counts as object store memory in use, so
an autoscaler would never see the node idle, and the next replica still finds the weights cached.
Many replicas starting at once make one remote read: the first claims the fetch, the others wait
for what it publishes (or, if it fails, the next one claims it). The directory keeps at most
``budget_bytes``, least recently used out first; a replica whose cached copy is gone reads the
source again. Nothing beyond Ray is needed.

>>> serving.weight_cache()            # what is cached, how often it was read
>>> serving.evict_weights()           # drop everything: the next replica reads remote storage
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import asdict, replace
from typing import Any

from servelab.errors import LoaderError
from servelab.loader.packing import pack, unpack
from servelab.serving import ray_adapter
from servelab.serving.snapshot import CacheEntry

DIRECTORY = "servelab-weight-cache"
HOLDER = "servelab-weight-holder-"  # + node id
DEFAULT_BUDGET = 8 * 2**30
WAIT_FOR_PEER_S = 300.0  # a waiter claims the fetch itself when the first fetcher takes longer (it may have died)
HANDOVER_TIMEOUT_S = 60.0  # how long a leaving node's release waits for its copies to move


class WeightDirectory:
    """The cluster-wide directory (a detached async actor): checkpoint key to object, single-flight fetches."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, tuple[CacheEntry, list[Any], Any]] = OrderedDict()  # entry, [ref], holder
        self._fetching: dict[str, asyncio.Event] = {}

    async def acquire(self, key: str) -> list[Any] | None:
        """The cached object (a one-element list, so Ray passes the reference), or None: then the
        caller fetches from the source and must ``publish`` or ``abandon``. Waits while another fetches."""
        deadline = time.monotonic() + WAIT_FOR_PEER_S
        while True:
            if key in self._entries:
                entry, refs, holder = self._entries[key]
                self._entries[key] = (_used(entry, read=True), refs, holder)
                self._entries.move_to_end(key)
                return refs
            fetching = self._fetching.get(key)
            if fetching is None or time.monotonic() > deadline:
                self._fetching[key] = asyncio.Event()
                return None
            try:
                await asyncio.wait_for(fetching.wait(), max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                continue

    def publish(self, key: str, uri: str, refs: list[Any], nbytes: int, replica: str, holder: Any, node: str) -> bool:
        """Record a fetched checkpoint held on ``node``; evict the least recently used over budget. False if it alone is over."""
        self._done(key)
        if nbytes > self.budget_bytes:
            holder.drop.remote(key)
            return False
        now = time.time()
        self._entries[key] = (CacheEntry(uri, nbytes, 0, replica, now, now, node), refs, holder)
        while sum(e.nbytes for e, _, _ in self._entries.values()) > self.budget_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def abandon(self, key: str) -> None:
        """The fetch failed: let the next waiter try."""
        self._done(key)

    def forget(self, key: str | None = None, uri: str | None = None, node: str | None = None) -> int:
        """Drop one entry, every entry of ``uri`` or held on ``node``, or all; their objects are freed. Returns how many."""
        gone = [
            k
            for k, (e, _, _) in self._entries.items()
            if (key is None or k == key) and (uri is None or e.uri == uri) and (node is None or e.node == node)
        ]
        for k in gone:
            self._drop(k)
        return len(gone)

    async def hand_over(self, node: str, targets: list[str]) -> int:
        """Move the copies held on ``node`` (drained, about to leave) so the cache stays warm after a
        compaction: each to a target that already has a copy (a replica there read it: no transfer),
        else to the one holding the fewest cached bytes. How many moved; one that cannot move stays,
        and goes with its node."""
        moved = 0
        for key in [k for k, (e, _, _) in self._entries.items() if e.node == node]:
            if key not in self._entries:  # evicted while an earlier copy moved
                continue
            copies = ray_adapter.object_nodes(self._entries[key][1][0])
            cached = {t: sum(e.nbytes for e, _, _ in self._entries.values() if e.node == t) for t in targets}
            target = min(targets, key=lambda t: (t not in copies, cached[t], t))
            holder = holder_on(target)
            try:
                refs = await holder.adopt.remote(key, self._entries[key][1])
            except Exception:  # the target left, or the source copy went first: this copy stays
                continue
            if key not in self._entries or self._entries[key][0].node != node:  # dropped meanwhile
                holder.drop.remote(key)
                continue
            entry, _, source = self._entries[key]
            self._entries[key] = (replace(entry, node=target), refs, holder)
            source.drop.remote(key)
            moved += 1
        return moved

    def entries(self) -> list[dict[str, Any]]:
        return [asdict(e) for e, _, _ in self._entries.values()]

    def _drop(self, key: str) -> None:
        _, _, holder = self._entries.pop(key)
        holder.drop.remote(key)  # the holder owns the object: it is freed once the holder lets go

    def _done(self, key: str) -> None:
        event = self._fetching.pop(key, None)
        if event is not None:
            event.set()


class WeightHolder:
    """Streams checkpoints into its node's object store and owns them there (a detached actor with no
    CPU pinned to the node), so they outlive the replica that asked; they go when the directory
    drops them or the node leaves. (Ray 2.56 removed ``ray.put(_owner=)``: a replica cannot hand
    an object it put over to another owner.)"""

    def __init__(self) -> None:
        import torch  # noqa: F401 - 1.5 s here, at the holder's start, not inside its first read's time

        self._held: dict[str, Any] = {}

    def fetch(self, key: str, uri: str, options: dict[str, Any]) -> tuple[list[Any], int, float]:
        """Stream ``uri`` from its source into this node's object store; the object, its size and the
        seconds the loader took to read it."""
        from servelab.loader import load
        from servelab.serving.replica_weights import replica_load_options  # it imports this module

        started = time.perf_counter()
        state = load(uri, **replica_load_options(options, device="cpu"))  # into the object store: host memory
        seconds = time.perf_counter() - started
        self._held[key] = ray_adapter.put(pack(state))
        return [self._held[key]], sum(t.nbytes for t in state.values()), seconds

    def adopt(self, key: str, refs: list[Any]) -> list[Any]:
        """Copy a checkpoint another node's holder keeps into this node's store and own it (that node
        is leaving). Copied out of the shared store first, so that the pulled copy can make room."""
        import torch

        tensors = ray_adapter.get_object(refs[0], HANDOVER_TIMEOUT_S)
        if tensors is None:
            raise LoaderError(f"the cached copy of {key} is gone")
        owned = pack(unpack(tensors, torch.device("cpu")))
        del tensors
        self._held[key] = ray_adapter.put(owned)
        return [self._held[key]]

    def drop(self, key: str) -> None:
        self._held.pop(key, None)


def holder_on(node_id: str) -> Any:
    """The holder of ``node_id``, started when none runs (several replicas asking at once get the same one)."""
    return ray_adapter.start_on_node(WeightHolder, HOLDER + node_id, node_id)


def holder_here() -> Any:
    """This node's holder."""
    return holder_on(ray_adapter.current_node_id())


def _used(entry: CacheEntry, read: bool) -> CacheEntry:
    return replace(entry, reads=entry.reads + int(read), last_used=time.time())


def directory(create: bool = False, budget_bytes: int = DEFAULT_BUDGET) -> Any | None:
    """The directory actor, started on the head when ``create`` and none runs."""
    found = ray_adapter.named_actor(DIRECTORY)
    if found is None and create:
        found = ray_adapter.start_on_head(WeightDirectory, DIRECTORY, budget_bytes, max_concurrency=64)
    return found


def weight_cache() -> list[CacheEntry]:
    """What the peer cache holds now, least recently used first.

    >>> [(e.uri, e.nbytes, e.reads) for e in serving.weight_cache()]
    """
    found = directory()
    return [] if found is None else [CacheEntry(**e) for e in ray_adapter.call(found, "entries")]


def hand_over(node_id: str, to: list[str]) -> Any | None:
    """Start moving the copies cached on ``node_id`` (drained: it will leave) to the nodes ``to``;
    the pending call for ``release_node``, or None when there is no cache or nowhere to go."""
    found = directory()
    if found is None or not to:
        return None
    return ray_adapter.submit(found, "hand_over", node_id, to)


def release_node(node_id: str, handover: Any | None = None) -> int:
    """Give up what the peer cache holds on ``node_id`` (its entries and its holder), so that a node
    compaction emptied is idle to an autoscaler, once ``handover`` (from ``hand_over``) moved what it
    could; the next replica that needs weights that did not move reads the source again. Returns how
    many entries went."""
    if handover is not None:
        ray_adapter.settled(handover, HANDOVER_TIMEOUT_S)  # what did not move in time goes below
    found = directory()
    gone = 0 if found is None else int(ray_adapter.call(found, "forget", None, None, node_id))
    _stop_holder(node_id)
    return gone


def evict_weights(uri: str | None = None) -> int:
    """Drop ``uri``'s checkpoints (or everything) from the peer cache; returns how many entries went.

    >>> serving.evict_weights("s3://models/llama/model.safetensors")
    """
    found = directory()
    if found is None:
        return 0
    gone = int(ray_adapter.call(found, "forget", None, uri))
    # An alive holder keeps its node busy: an autoscaler would never terminate a node whose
    # replicas and cached weights are all gone. Those left with nothing stop.
    keeping = {entry.node for entry in weight_cache()}
    for node in ray_adapter.nodes():
        if node.alive and node.id not in keeping:
            _stop_holder(node.id)
    return gone


def _stop_holder(node_id: str) -> None:
    holder = ray_adapter.named_actor(HOLDER + node_id)
    if holder is not None:
        ray_adapter.kill_actor(holder)
