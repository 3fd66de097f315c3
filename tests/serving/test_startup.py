"""up() on a loaded machine: Ray's head waits a fixed 30 s for its raylet to register, which a busy
machine can miss. up() tries again, and where every try fails it stops everything it started and says
so in one line. Each case runs in a process of its own, as a kernel would, while another cluster
loads the machine; the timeout is made to happen by Ray's own wait, the rest is a real cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from servelab.serving.ray_adapter import HEAD_ATTEMPTS
from servelab.testing import ClusterProcess

pytestmark = pytest.mark.slow

# Makes the first FAILS registrations of a raylet with the GCS time out in Ray's own loop
# (ray/_private/node.py: get_node raises until 30 s have passed on time.monotonic).
STARTUP = """
import json, sys, time
import psutil
import ray._private.node as node_module
import ray._private.services as services

from servelab import serving
from servelab.errors import ClusterError
from servelab.serving import ray_adapter

ray_adapter.HEAD_ATTEMPTS = int(sys.argv[2])
state = {"fails": int(sys.argv[1]), "jump": False}
real_get_node = services.get_node

def get_node(*args, **kwargs):
    if state["fails"] > 0:
        state["fails"] -= 1
        state["jump"] = True
        raise RuntimeError("the raylet has not registered yet (made to time out by the test)")
    return real_get_node(*args, **kwargs)

class Clock:  # node.py's clock: 31 s pass at the check after a failed registration
    def __getattr__(self, name):
        return getattr(time, name)

    def monotonic(self):
        jump, state["jump"] = state["jump"], False
        return time.monotonic() + (31 if jump else 0)

services.get_node = get_node
node_module.time = Clock()

def ours():
    return sorted(p.name() for p in psutil.Process().children(recursive=True))

try:
    serving.up(nodes=1, gpus_per_node=1)
except ClusterError as exc:
    print(json.dumps({"outcome": "refused", "message": str(exc), "left": ours()}))
else:
    running = ours()
    serving.down()
    print(json.dumps({"outcome": "up", "running": running, "left": ours()}))
"""


@pytest.fixture(scope="module")
def busy_machine() -> Iterator[ClusterProcess]:
    """Another cluster on the machine, as another user's kernel would run one."""
    with ClusterProcess(nodes=1) as other:
        yield other


def start(fails: int, attempts: int = HEAD_ATTEMPTS) -> dict:
    """up() in a process of its own, whose first ``fails`` raylet registrations time out, with ``attempts`` tries."""
    done = subprocess.run([sys.executable, "-c", STARTUP, str(fails), str(attempts)], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_head_that_times_out_once_is_started_again_and_its_first_try_leaves_nothing(busy_machine: ClusterProcess) -> None:
    result = start(fails=1)

    if result["outcome"] == "refused":  # the loaded machine made every later try miss Ray's 30 s too
        assert result["left"] == [] and "\n" not in result["message"]
        return
    assert result["running"].count("gcs_server") == 1  # the failed try's GCS was stopped, not left beside the new one
    assert result["running"].count("raylet") == 2  # the head and the one worker
    assert result["left"] == []  # down() stopped the rest


def test_a_head_that_never_registers_is_refused_in_one_line_and_leaves_no_process(busy_machine: ClusterProcess) -> None:
    result = start(fails=1, attempts=1)  # one try, as each of HEAD_ATTEMPTS ends: the retry test covers trying again

    assert result["outcome"] == "refused" and result["left"] == []
    message = result["message"]
    assert "\n" not in message and message.startswith(
        "the embedded cluster did not start: Ray's head did not register within Ray's fixed 30 s in 1 try (load average "
    )
    assert message.endswith(
        "and everything it started was stopped. Stop other work on this machine (another cluster, a model loading), then run up() again."
    )
