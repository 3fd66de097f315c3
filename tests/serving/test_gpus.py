"""How the embedded cluster's raylets share the machine's GPUs, and what the views say about them (pure: no Ray)."""

from __future__ import annotations

import pytest

from servelab.errors import ClusterError, DeviceError
from servelab.serving.gpu_metrics import GpuProcess, GpuReading
from servelab.serving.gpus import (
    LOGICAL,
    LOGICAL_NOTE,
    MODE_VARIABLE,
    PHYSICAL,
    RAY_NOSET_VARIABLE,
    default_gpus_per_node,
    plan_gpus,
    replica_device,
)
from servelab.serving.snapshot import Node, Replica, Snapshot
from servelab.widgets.model import Header, gpu_line
from servelab.widgets.summary import snapshot_html, snapshot_text


@pytest.mark.parametrize(
    ("requests", "physical", "devices"),
    [
        ([1], [0], ((0,),)),
        ([1, 1], [0, 1], ((0,), (1,))),
        ([2, 2, 2, 2], list(range(8)), ((0, 1), (2, 3), (4, 5), (6, 7))),
        ([2, 1], list(range(8)), ((0, 1), (2,))),  # the rest of the machine stays free for add_node()
        ([0.5, 0.5], [0, 1], ((0,), (1,))),  # a fraction of a GPU is a whole one of its own, shared by its replicas
        ([1, 0, 1], [3, 5], ((3,), (), (5,))),  # a CPU node gets none; the process's own CUDA_VISIBLE_DEVICES is kept
    ],
)
def test_each_raylet_gets_gpus_of_its_own(requests: list[float], physical: list[int], devices: tuple) -> None:
    plan = plan_gpus(requests, physical)
    assert plan.mode == PHYSICAL and plan.devices == devices
    every = [index for slice_ in plan.devices for index in slice_]
    assert len(every) == len(set(every)), "no physical GPU is shared by two raylets"
    for slice_ in plan.devices:
        environment = plan.environment_for(slice_)
        assert environment["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, slice_))
        assert environment[MODE_VARIABLE] == PHYSICAL and RAY_NOSET_VARIABLE not in environment
    assert plan.describe().startswith("physical GPUs:")


@pytest.mark.parametrize(
    ("requests", "physical", "why"),
    [
        ([2, 2, 2], [], "this machine has no GPU"),
        ([2, 2], [0], "4 GPUs asked for, 1 on this machine"),
        ([0.5, 0.5], [0], "2 GPUs asked for, 1 on this machine"),  # two raylets would share GPU 0: Ray's slot-0 trap
        ([3], [0, 1], "3 GPUs asked for, 2 on this machine"),
    ],
)
def test_more_gpus_than_the_machine_has_is_an_explicit_logical_mode(requests: list[float], physical: list[int], why: str) -> None:
    plan = plan_gpus(requests, physical)
    assert plan.mode == LOGICAL and plan.logical
    assert plan.describe().startswith(LOGICAL_NOTE) and why in plan.describe()
    environment = plan.environment_for(())
    # Every worker sees no CUDA device at all (Ray leaves the raylet's empty list alone), never GPU 0 by accident.
    assert environment == {"CUDA_VISIBLE_DEVICES": "", RAY_NOSET_VARIABLE: "1", MODE_VARIABLE: LOGICAL}


def test_no_gpus_asked_for() -> None:
    plan = plan_gpus([0, 0], [0, 1])
    assert plan.mode == PHYSICAL and plan.devices == ((), ())
    assert plan.describe() == "no GPUs asked for"


def test_logical_mode_names_a_request_that_would_be_physical() -> None:
    assert "nodes=1, gpus_per_node=1" in plan_gpus([2, 2, 2], [0]).describe()


@pytest.mark.parametrize("bad", [-1, float("nan"), "2", True])
def test_bad_gpu_counts_are_refused(bad: object) -> None:
    with pytest.raises(ClusterError, match="non-negative number"):
        plan_gpus([1, bad], [0, 1])  # type: ignore[list-item]


@pytest.mark.parametrize(("nodes", "machine", "expected"), [(3, 0, 2), (2, 8, 4), (3, 8, 2), (1, 1, 1), (3, 1, 1)])
def test_default_gpus_per_node_splits_the_machine(nodes: int, machine: int, expected: int) -> None:
    assert default_gpus_per_node(nodes, machine) == expected


def test_replica_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert replica_device("cpu", reserved=1) == "cpu"  # asked for explicitly: as asked
    assert replica_device("auto", reserved=0) == "auto"  # no GPU reserved: the loader's own choice
    if torch.cuda.is_available():
        assert replica_device("auto", reserved=0.5) == "cuda"
        return
    monkeypatch.setenv(MODE_VARIABLE, LOGICAL)
    assert replica_device("auto", reserved=0.5) == "cpu"  # logical GPUs: runs on the CPU and logs it
    monkeypatch.setenv(MODE_VARIABLE, PHYSICAL)
    with pytest.raises(DeviceError, match=r"reserved 0.5 GPU\(s\) but sees no CUDA device"):
        replica_device("auto", reserved=0.5)


def _snapshot(mode: str, gpus: tuple[GpuReading, ...] = ()) -> Snapshot:
    nodes = (
        Node("h" * 56, "head", {"CPU": 1}, {"CPU": 1}, head=True),
        Node("a" * 56, "worker", {"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 0.5}),
    )
    replicas = (Replica("r1", "classifier", "default", "a" * 56, {"GPU": 0.5}, pid=4242),)
    return Snapshot(nodes, replicas, gpu_mode=mode, gpus=gpus)


def test_views_label_logical_gpus() -> None:
    snapshot = _snapshot(LOGICAL)
    assert gpu_line(snapshot) == LOGICAL_NOTE
    assert Header.of(snapshot).gpus == LOGICAL_NOTE
    assert LOGICAL_NOTE in snapshot_text(snapshot) and LOGICAL_NOTE in snapshot_html(snapshot)


def test_views_show_physical_truth_beside_reservations() -> None:
    reading = GpuReading(0, "NVIDIA H200", 3_000_000_000, 150_000_000_000, 7.0, "a" * 56, (GpuProcess(4242, 2_000_000_000),))
    snapshot = _snapshot(PHYSICAL, (reading,))
    assert gpu_line(snapshot) == "1 x NVIDIA H200 (physical): 3 GB of 150 GB used, 7% busy"
    assert snapshot.gpus_on("a" * 56) == [reading] and snapshot.gpus_on("h" * 56) == []
    assert snapshot.gpu_memory_of(snapshot.replicas[0]) == 2_000_000_000
    text = snapshot_text(snapshot)
    assert "GPU 0 NVIDIA H200 on worker aaaaaaaa: 3 GB of 150 GB used, 7% busy; classifier 2 GB" in text
    assert "classifier 2 GB" in snapshot_html(snapshot)
    assert Snapshot.from_json(snapshot.to_json()) == snapshot


def test_views_say_nothing_of_gpus_they_cannot_read() -> None:
    snapshot = _snapshot(PHYSICAL)
    assert gpu_line(snapshot) == ""
    assert snapshot.gpu_memory_of(snapshot.replicas[0]) is None


def test_a_move_whose_gpu_memory_would_not_fit_is_flagged() -> None:
    from servelab.serving.planner import Move, gpu_memory_warnings

    a, b = "a" * 56, "b" * 56
    nodes = (Node(a, "gpu1", {"GPU": 1}, {"GPU": 0.5}), Node(b, "gpu1", {"GPU": 1}, {"GPU": 0.5}))
    replicas = (
        Replica("big", "llm", "default", a, {"GPU": 0.5}, pid=10),
        Replica("small", "embed", "default", a, {"GPU": 0.5}, pid=11),
    )
    gb = 1_000_000_000
    on_a = GpuReading(0, "NVIDIA H200", 40 * gb, 141 * gb, 0.0, a, (GpuProcess(10, 30 * gb), GpuProcess(11, 2 * gb)))

    def warnings(free_on_b: int) -> dict[str, str]:
        on_b = GpuReading(1, "NVIDIA H200", 141 * gb - free_on_b, 141 * gb, 0.0, b, ())
        snapshot = Snapshot(nodes, replicas, gpu_mode=PHYSICAL, gpus=(on_a, on_b))
        moves = [Move("big", "llm", "default", a, b), Move("small", "embed", "default", a, b)]
        return gpu_memory_warnings(snapshot, moves)

    assert warnings(free_on_b=100 * gb) == {}  # Ray's reservations and the real memory agree
    flagged = warnings(free_on_b=10 * gb)
    assert list(flagged) == ["big", "small"]  # the small one fits alone, not after the big one arrived
    assert flagged["big"].startswith("holds 30 GB of GPU memory; the GPUs of gpu1 bbbbbbbb have 10 GB free")
    assert warnings(free_on_b=31 * gb).keys() == {"small"}
    snapshot = Snapshot(nodes, replicas, gpu_mode=LOGICAL)  # nothing to read: nothing flagged
    assert gpu_memory_warnings(snapshot, [Move("big", "llm", "default", a, b)]) == {}


def test_a_node_added_later_gets_gpus_no_raylet_holds() -> None:
    from servelab.serving.cluster import _free_gpus
    from servelab.serving.context import Session

    session = Session("127.0.0.1:1", None, {}, gpu_plan=plan_gpus([1], [0, 1, 2]), machine_gpus=(0, 1, 2))
    session.gpu_devices["n1"] = (0,)
    assert _free_gpus(session, 2) == (1, 2)
    assert _free_gpus(session, 0) == ()
    session.gpu_devices["n2"] = (1, 2)
    with pytest.raises(ClusterError, match=r"a node of 1 GPU\(s\) does not fit: 0 of this machine's 3 GPUs are free"):
        _free_gpus(session, 1)
    logical = Session("127.0.0.1:1", None, {}, gpu_plan=plan_gpus([2], []))
    assert _free_gpus(logical, 2) == ()  # logical GPUs: nothing to hand out, nothing to run out of


def test_a_workers_labels_carry_its_type_price_mode_and_physical_gpus() -> None:
    from servelab.serving.cluster import cost_from_labels, devices_from_labels, node_type_of, worker_labels
    from servelab.serving.context import NodeType

    labels = worker_labels("gpu2", NodeType(cpus=4, gpus=2, labels={"zone": "a"}, cost_per_hour=3.5), PHYSICAL, (2, 5))
    assert (node_type_of(labels), cost_from_labels(labels), devices_from_labels(labels)) == ("gpu2", 3.5, (2, 5))
    assert labels["zone"] == "a"
    unpriced = worker_labels("cpu", NodeType(cpus=1), LOGICAL)
    assert (cost_from_labels(unpriced), devices_from_labels(unpriced)) == (None, ())
    assert devices_from_labels({}) == ()  # a node up() did not start: nothing to read on this machine
