"""What the magics print about weights: bytes and rate per source, apart from each replica's wait."""

from __future__ import annotations

from servelab.kernel.results import weights_line
from servelab.serving.deployments import WeightLoad


def load(source: str, seconds: float, stream_s: float, nbytes: int = 64_000_000) -> WeightLoad:
    return WeightLoad("r", "d", "a", "n", seconds, nbytes, source, stream_s)


def test_the_rate_counts_only_the_seconds_the_bytes_moved() -> None:
    line = weights_line([load("remote", 13.6, 0.05), load("peer", 2.0, 0.02), load("peer", 2.4, 0.02)])
    # 64 MB in 0.05 s is 1.28 GB/s (and 2 x 64 MB in 2 x 0.02 s 3.2 GB/s), though the replica waited 13.6 s (its node's weight holder started first)
    assert line == (
        "weights 64 MB per replica: 1.28 GB/s from the source (1 replica), 3.2 GB/s from peers (2 replicas): "
        "the source read once for 3 replicas; 2.0-13.6 s each with start-up"
    )


def test_a_peer_copy_slower_than_the_source_says_what_it_saves_instead() -> None:
    # 630 MB/s from the file, 176 MB/s from peers: on one machine both are loopback.
    line = weights_line([load("remote", 0.2, 0.1, 63_000_000), load("peer", 0.5, 0.36, 63_000_000)] * 2)
    assert line == (
        "weights 63 MB per replica: 630 MB/s from the source (2 replicas), 175 MB/s from peers (2 replicas): the source "
        "read 2 times for 4 replicas (a copy from peers is not faster on one machine; it spares the source's reads and "
        "the network); 0.2-0.5 s each with start-up"
    )


def test_one_source_and_one_wait() -> None:
    assert weights_line([load("remote", 0.5, 0.5, 1_000_000)]) == (
        "weights 1 MB per replica: 2 MB/s from the source (1 replica); 0.5 s each with start-up"
    )
