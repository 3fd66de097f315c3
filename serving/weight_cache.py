"""The peer weight cache: a checkpoint streamed once from remote storage, then shared over the cluster.

The first replica that streams a checkpoint publishes its tensors to Ray's object store on its own
node, owned by a holder there (a detached CPU-less actor per node, so they outlive that replica), and
records them in a directory (a detached named actor on the head); a replica that starts later
anywhere in the cluster gets them over the cluster network instead of from remote storage.
A node compaction empties gives its copies up with its holder (``release_node``): an object's
primary copy counts as object store memory in use, so an autoscaler would never see the node idle.
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
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from servelab.serving import ray_adapter

if TYPE_CHECKING:
    import torch

DIRECTORY = "servelab-weight-cache"
HOLDER = "servelab-weight-holder-"  # + node id
DEFAULT_BUDGET = 8 * 2**30
WAIT_FOR_PEER_S = 300.0  # a waiter claims the fetch itself when the first fetcher takes longer (it may have died)


@dataclass(frozen=True)
class CacheEntry:
    """One checkpoint in the peer cache."""

    uri: str
    nbytes: int
    reads: int  # replicas that loaded it from the cache
    published_by: str
    published_at: float
    last_used: float
    node: str = ""  # where its bytes are held (by that node's holder)


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
        self._held: dict[str, Any] = {}

    def fetch(self, key: str, uri: str, options: dict[str, Any]) -> tuple[list[Any], int]:
        """Stream ``uri`` from its source into this node's object store; the object and its size."""
        from servelab.loader import load

        state = load(uri, **{**options, "device": "cpu", "progress": False})
        self._held[key] = ray_adapter.put(packed(state))
        return [self._held[key]], sum(t.nbytes for t in state.values())

    def drop(self, key: str) -> None:
        self._held.pop(key, None)


def holder_here() -> Any:
    """This node's holder, started when none runs (several replicas asking at once get the same one)."""
    node = ray_adapter.current_node_id()
    return ray_adapter.start_on_node(WeightHolder, HOLDER + node, node)


def _used(entry: CacheEntry, read: bool) -> CacheEntry:
    return replace(entry, reads=entry.reads + int(read), last_used=time.time())


def directory(create: bool = False, budget_bytes: int = DEFAULT_BUDGET) -> Any | None:
    """The directory actor, started on the head when ``create`` and none runs."""
    found = ray_adapter.named_actor(DIRECTORY)
    if found is None and create:
        found = ray_adapter.start_on_head(WeightDirectory, DIRECTORY, budget_bytes, max_concurrency=64)
    return found


def packed(state: dict[str, torch.Tensor]) -> list[tuple[str, str, tuple[int, ...], Any]]:
    """A state dict as the object store holds it: raw bytes per tensor (numpy, so Ray stores them
    out of band and readers map them without a copy), with dtype and shape."""
    import torch

    out = []
    for name, tensor in state.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        out.append((name, str(flat.dtype).removeprefix("torch."), tuple(tensor.shape), flat.view(torch.uint8).numpy()))
    return out


def unpacked(tensors: list[tuple[str, str, tuple[int, ...], Any]], device: torch.device) -> dict[str, torch.Tensor]:
    """The state dict again, copied out of the (read-only, shared) object store onto ``device``; on
    the CPU into one slab whose pages are faulted in ahead (page faults cost more than the copy)."""
    import torch

    from servelab.loader.pagecache import prefault
    from servelab.loader.plan import pack_offsets

    state = {}
    sizes = [int(raw.nbytes) for _, _, _, raw in tensors]
    offsets, total = pack_offsets(sizes)  # aligned, so every dtype can view its slice
    slab = torch.empty(total, dtype=torch.uint8) if device.type == "cpu" else None
    if slab is not None:
        prefault(slab.data_ptr(), total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about wrapping a read-only buffer: it is copied at once
        for (name, dtype, shape, raw), size, offset in zip(tensors, sizes, offsets, strict=True):
            source = torch.frombuffer(raw, dtype=torch.uint8) if size else torch.empty(0, dtype=torch.uint8)
            if slab is None:
                target = source.to(device)
            else:
                target = slab[offset : offset + size]
                target.copy_(source)
            state[name] = target.view(getattr(torch, dtype)).reshape(shape)
    return state


def weight_cache() -> list[CacheEntry]:
    """What the peer cache holds now, least recently used first.

    >>> [(e.uri, e.nbytes, e.reads) for e in serving.weight_cache()]
    """
    found = directory()
    return [] if found is None else [CacheEntry(**e) for e in ray_adapter.call(found, "entries")]


def release_node(node_id: str) -> int:
    """Give up what the peer cache holds on ``node_id`` (its entries and its holder), so that a node
    compaction emptied is idle to an autoscaler; the next replica that needs those weights reads the
    source again. Returns how many entries went."""
    found = directory()
    gone = 0 if found is None else int(ray_adapter.call(found, "forget", None, None, node_id))
    holder = ray_adapter.named_actor(HOLDER + node_id)
    if holder is not None:
        ray_adapter.kill_actor(holder)
    return gone


def evict_weights(uri: str | None = None) -> int:
    """Drop ``uri``'s checkpoints (or everything) from the peer cache; returns how many entries went.

    >>> serving.evict_weights("s3://models/llama/model.safetensors")
    """
    found = directory()
    return 0 if found is None else int(ray_adapter.call(found, "forget", None, uri))
