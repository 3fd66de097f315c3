"""Progress of a weight stream: events for callbacks and widgets, and a tqdm bar in notebooks."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LoadProgress:
    """One progress event: how much of a checkpoint, and of each of its files, has arrived so far."""

    uri: str
    bytes_done: int
    bytes_total: int
    tensors_done: int
    tensors_total: int
    elapsed_s: float
    files: tuple[tuple[str, int, int], ...] = ()  # (file URI, bytes done, bytes total) per file

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0

    @property
    def gbps(self) -> float:
        """Throughput so far, in GB/s."""
        return self.bytes_done / self.elapsed_s / 1e9 if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_bytes(nbytes: float) -> str:
    """``67200512`` as ``"67.2 MB"``: decimal units, three significant figures."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes:.0f} B"


def format_rate(nbytes: float, seconds: float) -> str:
    """Throughput in the unit that suits it: ``"1.72 GB/s"``, ``"35.1 MB/s"``."""
    return f"{format_bytes(nbytes / seconds)}/s" if seconds > 0 else "-"


ProgressCallback = Callable[[LoadProgress], None]
Progress = bool | ProgressCallback | None


class ProgressReporter:
    """Turns byte and tensor counts into LoadProgress events for a callback and/or a tqdm bar."""

    def __init__(self, uri: str, files: list[tuple[str, int]], tensors_total: int, progress: Progress) -> None:
        self._uri = uri
        self._files = [name for name, _ in files]
        self._file_totals = [size for _, size in files]
        self._file_done = [0] * len(files)
        self._bytes_total = sum(self._file_totals)
        self._tensors_total = tensors_total
        self._callback = progress if callable(progress) else None
        show_bar = progress is True or (progress is None and _in_notebook())
        self._bar = _tqdm_bar(uri, self._bytes_total) if show_bar else None
        self._started = time.perf_counter()
        self.bytes_done = 0
        self.tensors_done = 0

    def advance(self, nbytes: int = 0, tensors: int = 0, file: int | None = None) -> None:
        self.bytes_done += nbytes
        if file is not None:
            self._file_done[file] += nbytes
        self.tensors_done += tensors
        if self._bar is not None and nbytes:
            self._bar.update(nbytes)
        if self._callback is not None:
            self._callback(
                LoadProgress(
                    self._uri,
                    self.bytes_done,
                    self._bytes_total,
                    self.tensors_done,
                    self._tensors_total,
                    time.perf_counter() - self._started,
                    tuple(zip(self._files, self._file_done, self._file_totals, strict=True)),
                )
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, without importing IPython where it is not already loaded."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _tqdm_bar(uri: str, total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=uri.rsplit("/", 1)[-1], leave=False)
