"""Write the tutorial notebooks from the cells below, run them, and keep the outputs nbval checks.

Run: ``python examples/make_notebooks.py [NAME...]`` (about three minutes for all). Cells marked ``# NBVAL_CHECK_OUTPUT``
print deterministic results (counts, states, failures) that nbval compares with the outputs stored
here; every other output is dropped, so nothing random or timed is stored or checked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHECKED = "# NBVAL_CHECK_OUTPUT"

HERE = Path(__file__).parent


def notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    # The kernel's name as ipykernel's spec gives it: JupyterLab marks a notebook that names it
    # otherwise as changed the moment it opens.
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in cells]
    return nb


QUICKSTART = [
    (
        "md",
        """# servelab quickstart

Start a multi-node Ray cluster on this machine, deploy two models whose replicas **stream their weights**,
watch the cluster's **fragmentation** after scaling down, and **compact** the replicas onto fewer nodes
with zero failed requests.

The cluster is embedded: one Ray raylet per node, all on this machine, with *logical* GPUs where the
machine has none. On a real cluster use `%servelab connect ray://head:10001` instead.""",
    ),
    ("code", "%load_ext servelab"),
    ("md", "## 1. A cluster: a head and three workers with two GPUs each"),
    ("code", "%servelab up --nodes 3 --gpus-per-node 2 --cpus-per-node 1"),
    (
        "md",
        """## 2. Two models with streamed weights

Each replica's constructor receives its weights as a dict of tensors, streamed by `servelab.loader` from
any URI (a local path here; `s3://`, `https://`, any fsspec URI works the same). First, a checkpoint per
model: 67 MB for the classifier (a 4096 x 4096 backbone), 13 MB for the embedder.""",
    ),
    (
        "code",
        """import tempfile, torch
from safetensors.torch import save_file

workdir = tempfile.mkdtemp(prefix="servelab-quickstart-")
torch.manual_seed(0)
classifier_weights = f"{workdir}/classifier.safetensors"
embedder_weights = f"{workdir}/embedder.safetensors"
save_file({"backbone.weight": torch.randn(4096, 4096) / 64, "fc.weight": torch.randn(10, 4096), "fc.bias": torch.zeros(10)}, classifier_weights)
save_file({"embed.weight": torch.randn(50_000, 64)}, embedder_weights)""",
    ),
    (
        "md",
        """`%%deploy` waits until every replica runs and reports the weights: their size, and the rate at which
they arrived from each source. The first replica on the cluster streams them from the file; the others
copy them from its node (the peer cache), so the file is read once. The seconds each replica waited
include starting the weight holder on its node, which is why they are longer than the bytes need.""",
    ),
    (
        "code",
        """%%deploy classifier --replicas 4 --gpus 0.5 --weights {classifier_weights}
import torch

class Classifier:
    def __init__(self, weights):
        self.backbone, self.weight, self.bias = weights["backbone.weight"], weights["fc.weight"], weights["fc.bias"]

    async def __call__(self, request):
        x = torch.ones(4096)
        return {"label": int((self.weight @ torch.tanh(self.backbone @ x) + self.bias).argmax())}""",
    ),
    (
        "code",
        """%%deploy embedder --replicas 4 --gpus 0.5 --weights {embedder_weights}
class Embedder:
    def __init__(self, weights):
        self.table = weights["embed.weight"]

    async def __call__(self, request):
        token = int(request.query_params.get("token", 0))
        return {"dims": len(self.table[token])}""",
    ),
    ("md", "Each deployment answers over HTTP on Serve's proxy (and through `serving.handle(name)` from Python):"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
import json, urllib.request
from servelab import serving

def ask(name, query=""):
    with urllib.request.urlopen(serving.url(name) + query, timeout=30) as response:
        return json.loads(response.read())

print("classifier answers a label:", "label" in ask("classifier"))
print("embedder:", ask("embedder", "?token=7"))""",
    ),
    (
        "md",
        """## 3. Scale down, and see the fragmentation

Each model filled a node of its own. Scaled down to two replicas each, both nodes are half empty:
the replicas would fit on one node, but two are paid for. `%servelab view` draws every node, refreshing
itself; the header compares the nodes in use with the lower bound. Its $/h prices each node by its
resources at on-demand cloud rates (hover over it to see them): with logical GPUs it is what such nodes
would cost in a cloud, not what this machine costs.""",
    ),
    ("code", "%scale classifier 2"),
    ("code", "%scale embedder 2"),
    ("code", "%servelab view"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
frag = serving.fragmentation(serving.snapshot())
print(f"nodes in use: {frag.nodes_in_use}, lower bound: {frag.lower_bound}, score: {frag.score:.2f}")""",
    ),
    (
        "md",
        """## 4. Compact

`%compact --dry-run` shows the plan: the cluster now and after, the moves, what is freed and why other
nodes stay. Its **Compact** button would run it; here the next cell runs it with `%compact`, which keeps
calling both models throughout and reports failed requests and latency.""",
    ),
    ("code", "%compact --dry-run"),
    ("code", "report = %compact"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
print("nodes freed:", len(report.nodes_freed))
print("replicas moved:", report.replicas_moved)
print("failed requests:", report.failed_requests)
print("deployments:", sorted((d.name, d.status, d.running_replicas) for d in serving.deployments()))""",
    ),
    ("code", "report"),
    ("code", "%servelab status"),
    ("md", "## 5. Shut down"),
    (
        "code",
        """%servelab down
import shutil
shutil.rmtree(workdir)""",
    ),
]

STREAMING = [
    (
        "md",
        """# Streaming weights

`%stream` loads a safetensors checkpoint into the kernel with a progress bar per file and a throughput
line, from a local path, HTTP(S), S3 or any fsspec URI. This notebook writes a checkpoint, serves it from
real HTTP (nginx) and S3 (SeaweedFS) servers on 127.0.0.1, and compares streaming with
download-then-load.""",
    ),
    ("code", "%load_ext servelab"),
    (
        "code",
        """import tempfile
from pathlib import Path
from servelab.testing import NginxServer, SeaweedS3Server, write_llm_checkpoint

workdir = Path(tempfile.mkdtemp(prefix="servelab-streaming-"))
checkpoint = write_llm_checkpoint(workdir, 64 << 20, shards=2)   # a Llama-shaped 64 MiB bf16 model, two shards
http = NginxServer(workdir)
s3 = SeaweedS3Server()
for shard in workdir.glob("model*"):
    s3.upload(shard, f"llm/{shard.name}")
s3_options = s3.storage_options
sources = {
    "local": str(checkpoint),
    "http": http.url(checkpoint.name),
    "s3": f"s3://{s3.bucket}/llm/{checkpoint.name}",
}""",
    ),
    ("md", "What is in it, from the headers alone (nothing else is read):"),
    ("code", "%stream {sources['local']} --dry-run"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
info = _
print(info.shards, "shards,", len(info.tensors), "tensors,", info.nbytes, "bytes")""",
    ),
    ("md", "Stream it from each source into a variable:"),
    ("code", "%stream {sources['local']} --into local_weights"),
    ("code", "%stream {sources['http']} --into http_weights"),
    ("code", "%stream {sources['s3']} --into s3_weights --storage-options s3_options"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
import torch
same = all(torch.equal(local_weights[k], http_weights[k]) and torch.equal(local_weights[k], s3_weights[k]) for k in local_weights)
print("identical from every source:", same, "-", len(local_weights), "tensors")""",
    ),
    (
        "md",
        """## Streaming against download-then-load

The usual way is to download the checkpoint to disk, then load it. Streaming reads ranged chunks
concurrently straight into memory and never writes the file. Three rounds each:""",
    ),
    (
        "code",
        """import shutil, time, urllib.request
from safetensors.torch import load_file
from servelab.loader import inspect, load

def download_then_load(url):
    target = workdir / "download"
    target.mkdir(exist_ok=True)
    state = {}
    for shard in sorted({t.file for t in inspect(url).tensors}):
        local = target / shard.rsplit("/", 1)[-1]
        with urllib.request.urlopen(shard) as response, open(local, "wb") as out:
            shutil.copyfileobj(response, out, 8 << 20)
        state.update(load_file(local))
    shutil.rmtree(target)
    return state

def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    state = fn(*args, **kwargs)
    return time.perf_counter() - started, sum(t.nbytes for t in state.values())

rows = []
for round_ in range(3):
    for label, fn, uri, options in (
        ("stream: local", load, sources["local"], {}),
        ("stream: http", load, sources["http"], {}),
        ("stream: s3", load, sources["s3"], {"storage_options": s3_options}),
        ("download, then load: http", download_then_load, sources["http"], {}),
    ):
        seconds, nbytes = timed(fn, uri, **{"progress": False, **options} if fn is load else {})
        rows.append((label, nbytes / seconds / 1e9))""",
    ),
    (
        "code",
        """import statistics
import plotly.graph_objects as go

labels = list(dict.fromkeys(label for label, _ in rows))
medians = [statistics.median(gbps for label_, gbps in rows if label_ == label) for label in labels]
go.Figure(
    go.Bar(x=medians, y=labels, orientation="h", text=[f"{m:.2f} GB/s" for m in medians], marker_color="#4C78A8"),
    layout={"title": "Median throughput over three rounds (GB/s, higher is better)", "height": 320, "margin": {"l": 10}},
)""",
    ),
    (
        "code",
        """http.stop()
s3.stop()
shutil.rmtree(workdir)""",
    ),
]

COMPACTION = [
    (
        "md",
        """# Compaction: plans under each objective, then a compaction under load

Two node types with different prices: `big` (4 GPUs, \\$9.00/h) and `small` (2 GPUs, \\$3.50/h). Three
deployments each fill a node of their own and are then scaled down, leaving three nodes partly empty.
servelab plans where replicas should go to **free the most nodes** or to **save the most money**
(the two disagree here), then migrates them with zero downtime: Ray drains each node, and Serve starts
every replacement before it stops the old replica.

To make the starting layout the same on every run, nodes join one at a time (`add_node` stands in for
an autoscaler), so each deployment has exactly one node with room for it.""",
    ),
    (
        "code",
        """%load_ext servelab
from servelab import serving
from servelab.testing.apps import Echo

serving.up(node_types={
    "big":   {"count": 1, "cpus": 1, "gpus": 4, "cost_per_hour": 9.0},
    "small": {"count": 0, "cpus": 1, "gpus": 2, "cost_per_hour": 3.5},
})
serving.deploy("detector", Echo, replicas=4, gpus=1, init_args=("detector",))    # fills the big node
serving.add_node("small")
serving.deploy("ranker", Echo, replicas=2, gpus=1, init_args=("ranker",))        # fills a small node
serving.add_node("small")
serving.deploy("reranker", Echo, replicas=4, gpus=0.5, init_args=("reranker",))  # fills the other
spare = serving.add_node("big")                                                  # idle""",
    ),
    ("md", "Traffic drops, and each deployment is scaled down:"),
    (
        "code",
        """serving.scale("detector", 1)
serving.scale("ranker", 1)
serving.scale("reranker", 3)
serving.wait_healthy()""",
    ),
    ("code", "%servelab view"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
snap = serving.snapshot()
frag = serving.fragmentation(snap)
print(f"nodes in use: {frag.nodes_in_use}, lower bound: {frag.lower_bound}")
print(sorted((d.name, d.running_replicas) for d in snap.deployments))""",
    ),
    (
        "md",
        """## Plans, side by side

Three and a half GPUs of replicas are spread over three nodes; one big node could hold them all.""",
    ),
    (
        "code",
        """by_nodes = serving.plan(snap, objective="nodes")
by_cost = serving.plan(snap, objective="cost")
by_nodes""",
    ),
    ("code", "by_cost"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
for plan in (by_nodes, by_cost):
    freed = sorted(snap.node(n).type for n in plan.nodes_to_free)
    print(f"{plan.objective:5}: {plan.nodes_before} -> {plan.nodes_after} nodes in use, frees {freed}, "
          f"${plan.freed_cost_per_hour:.2f}/h, {len(plan.moves)} move(s), optimal: {plan.optimal}")""",
    ),
    (
        "md",
        """**nodes** packs everything onto the big node and frees both small ones (\\$7.00/h); **cost** keeps the
two cheap nodes, moves the big node's one replica onto the whole GPU the ranker left free and frees the
big node (\\$9.00/h, with a single move). A move budget bounds the disruption:""",
    ),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
one_move = serving.plan(snap, objective="nodes", max_moves=1)
print(f"nodes, at most one move: frees {len(one_move.nodes_to_free)} node(s) instead of {len(by_nodes.nodes_to_free)}")""",
    ),
    (
        "md",
        """## The compaction panel, then a compaction under load

`%compact --dry-run` draws the plan: the cluster now and after, the moves, the savings, why nodes stay,
and a **Compact** button. `%compact` runs it while calling every deployment, and reports how the requests fared.""",
    ),
    ("code", "%compact --dry-run --objective cost"),
    ("code", "report = %compact --objective cost"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
print("stopped:", report.stopped)
print("nodes freed:", [snap.node(n).type for n in report.nodes_freed], "- saved per hour:", report.plan.freed_cost_per_hour)
print("failed requests:", report.failed_requests)
print("every deployment healthy:", serving.all_healthy())""",
    ),
    ("code", "report"),
    ("code", "%servelab down"),
]

LLM = [
    (
        "md",
        """# LLMs on vLLM, with streamed weights

`%deploy llm` serves a Hugging Face model with **vLLM** behind **Ray Serve LLM**'s OpenAI-compatible API
(`/v1/completions`, `/v1/chat/completions`). Each replica fetches the model's config and tokenizer and
**streams its safetensors** with `servelab.loader` straight into the engine (`load_format="servelab"`):
no checkpoint is copied to disk first. The model can live at any URI: a local directory here,
`s3://`, `https://` or any fsspec URI the same way.

This machine has no GPU, so vLLM runs on its CPU build and each replica takes two CPUs; on GPU machines
each replica gets a GPU (`--gpus-per-replica`, `--tensor-parallel`).""",
    ),
    (
        "code",
        """%load_ext servelab
%servelab up --nodes 2 --cpus-per-node 2 --gpus-per-node 0""",
    ),
    (
        "md",
        """## A model

A tiny Llama made here, offline: a tokenizer trained on a few sentences and seeded random weights, saved
the Hugging Face way. It answers nonsense, but exactly the nonsense its weights say.""",
    ),
    (
        "code",
        """import tempfile
from servelab.testing.llm import write_tiny_llama

model_dir = write_tiny_llama(tempfile.mkdtemp(prefix="servelab-llm-") + "/tiny-llama")
# float32: the weights' dtype (vLLM on a CPU would pick bfloat16); eager: no torch.compile warm-up,
# which takes a quarter of a tiny model's start here and buys nothing at this size
engine = {"dtype": "float32", "enforce_eager": True}""",
    ),
    ("code", "%deploy llm tiny --model {model_dir} --max-model-len 256 --engine-kwargs engine"),
    (
        "md",
        """## Chat with it

Any OpenAI client works; the model's name is the one given to `%deploy llm`:""",
    ),
    (
        "code",
        """from openai import OpenAI
from servelab import serving

client = OpenAI(base_url=serving.url("tiny") + "/v1", api_key="none")
reply = client.chat.completions.create(
    model="tiny", messages=[{"role": "user", "content": "Hello, how are you today?"}], max_tokens=8, temperature=0
)
reply.choices[0].message.content""",
    ),
    (
        "md",
        "The streamed weights are the saved ones: vLLM's greedy answer is transformers' `generate()`, token for token.",
    ),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
from servelab.testing.llm import greedy_tokens

answer = client.completions.create(
    model="tiny", prompt="The quick brown fox", max_tokens=12, temperature=0, extra_body={"return_token_ids": True}
)
print("same tokens as transformers:", answer.choices[0].token_ids == greedy_tokens(model_dir, "The quick brown fox", 12))""",
    ),
    (
        "md",
        """## Scale it, and see its replicas

A second replica streams the weights again on its own node. The LLM server is an ordinary Serve
deployment: it shows in ClusterView, and `%compact` moves it like any other.""",
    ),
    ("code", "%scale tiny 2"),
    ("code", "%servelab view"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
servers = [r for r in serving.snapshot().replicas if r.deployment == "LLMServer:tiny"]
print("running:", sum(r.state == "RUNNING" for r in servers), "replicas on", len({r.node_id for r in servers}), "nodes")
print("each holds:", servers[0].resources)""",
    ),
    ("code", "%servelab down"),
]

MANY_MODELS = [
    (
        "md",
        """# Many models on few replicas, and fast scale-up from peers

Two things that make replicas come up fast and GPUs go further:

- **Multiplexing**: one deployment serves many models. Each request names its model (the
  `serve_multiplexed_model_id` header, as Ray Serve does); a replica **streams** a model's weights the
  first time it is asked for, keeps a few, and evicts the least recently used. Ray Serve routes later
  requests for a model to the replicas that hold it.
- **The peer weight cache**: the first replica of a deployment streams its checkpoint from remote storage
  and publishes it to Ray's object store; replicas started later load it from there, over the cluster's
  network, instead of from remote storage. Each replica's **timeline** says where its weights came from.""",
    ),
    (
        "code",
        """%load_ext servelab
%servelab up --nodes 2 --gpus-per-node 2 --cpus-per-node 1""",
    ),
    (
        "md",
        """## Six models, one deployment

Six small scorers, each a checkpoint of its own under one directory (an `s3://` or `https://` prefix
works the same way). The class is written for one model; `--multiplex` gives its constructor the
weights of whichever model a request names. Each replica keeps at most two.""",
    ),
    (
        "code",
        """import tempfile, torch
from pathlib import Path
from safetensors.torch import save_file

models = Path(tempfile.mkdtemp(prefix="servelab-models-"))
for i in range(6):
    (models / f"scorer-{i}").mkdir()
    save_file({"w": torch.full((16,), float(i))}, models / f"scorer-{i}" / "model.safetensors")""",
    ),
    (
        "code",
        """%%deploy scorers --multiplex {models}/{{model_id}}/model.safetensors --max-models 2 --gpus 0.5
class Scorer:
    def __init__(self, weights):
        self.w = weights["w"]

    async def __call__(self, request):
        return {"score": float(self.w.sum())}""",
    ),
    (
        "md",
        """Requests follow a skewed pattern, as real traffic does: a few models are asked for often, most rarely.""",
    ),
    (
        "code",
        """import random, requests
from servelab import serving

rng = random.Random(0)
trace = rng.choices([f"scorer-{i}" for i in range(6)], weights=[1 / (k + 1) ** 1.2 for k in range(6)], k=60)
answers = [
    requests.get(serving.url("scorers"), headers={"serve_multiplexed_model_id": m}, timeout=30).json()["score"]
    for m in trace
]""",
    ),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
print("every answer from the model asked for:", answers == [16.0 * int(m.split("-")[1]) for m in trace])
unknown = requests.get(serving.url("scorers"), headers={"serve_multiplexed_model_id": "scorer-99"}, timeout=30)
print("an unknown model:", unknown.status_code, unknown.json()["error"].split(" cannot")[0])""",
    ),
    (
        "md",
        """`ModelsView` shows, per model, the replicas holding it, requests, hit rate, loads, evictions and load time.""",
    ),
    ("code", 'from servelab.widgets import ModelsView, TimelineView\nModelsView("scorers")'),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
import time

deadline = time.monotonic() + 15
while True:  # replicas report hits at most once a second
    counts = [c for r in serving.snapshot().replicas if r.deployment == "scorers" for c in r.models]
    if sum(c.requests for c in counts) == len(trace) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print("requests counted:", sum(c.requests for c in counts), "of", len(trace))
print("every request a hit or a load:", sum(c.hits + c.misses for c in counts) == len(trace))
print("models held now:", sum(c.loaded for c in counts), "- evicted at some point:", sum(c.evictions for c in counts) > 0)""",
    ),
    (
        "md",
        """## Scale-up from the peer cache

A 64 MB checkpoint, one replica first. Then two more: they load the weights from the replica that
streamed them, through Ray's object store, and remote storage is read once.""",
    ),
    (
        "code",
        """checkpoint = models / "ranker.safetensors"
save_file({"w": torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0))}, checkpoint)""",
    ),
    (
        "code",
        """%%deploy ranker --weights {checkpoint} --gpus 0.5
class Ranker:
    def __init__(self, weights):
        self.norm = float(weights["w"].norm())

    async def __call__(self, request):
        return {"norm": self.norm}""",
    ),
    ("code", "%scale ranker 3"),
    (
        "code",
        """for _ in range(30):  # traffic, so that each replica answers a first request
    requests.get(serving.url("ranker"), timeout=30)
TimelineView("ranker")""",
    ),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
timelines = serving.replica_timelines("ranker")
print("weights from:", sorted(t.source for t in timelines))
print("cached:", [(Path(e.uri).name, e.reads) for e in serving.weight_cache()])""",
    ),
    ("code", "%servelab down"),
]


AUTOSCALING = [
    (
        "md",
        """# Autoscaling: Ray's autoscaler launches the nodes, compaction gives them back

An embedded cluster whose workers belong to **Ray's own autoscaler** (its local node provider launches
and terminates raylets on this machine). A deployment that does not fit makes it launch nodes; after a
scale-down, compaction drains the half-empty node and the autoscaler **terminates** it: that is when
the $/h is saved. Its GPUs are logical (the local provider cannot give each raylet GPUs of its own).""",
    ),
    (
        "code",
        """%load_ext servelab
from servelab import serving
from servelab.testing.apps import Echo""",
    ),
    ("md", "## 1. A cluster of 0 to 3 workers (1 CPU, 2 GPUs each), idle ones terminated after 10 s"),
    ("code", "%servelab up --autoscale --nodes 3 --gpus-per-node 2 --idle-timeout 10"),
    (
        "md",
        """## 2. Deployments that need nodes

No worker runs yet. Eight half-GPU replicas need two nodes: the autoscaler launches them, and each
view says why replicas are pending while it does (`snapshot().autoscaler.describe()`).""",
    ),
    (
        "code",
        """import threading, time

why_pending = []
def watch():
    while not serving.all_healthy() or not serving.deployments():
        line = serving.snapshot().autoscaler.describe()
        if line and line not in why_pending:
            why_pending.append(line)
        time.sleep(0.5)

watcher = threading.Thread(target=watch)
watcher.start()
serving.deploy("detector", Echo, replicas=4, gpus=0.5, init_args=("detector",))
serving.deploy("ranker", Echo, replicas=4, gpus=0.5, init_args=("ranker",))
watcher.join()
print(*why_pending, sep="\\n")""",
    ),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
snap = serving.snapshot()
print("workers the autoscaler launched:", len(snap.workers))
print(sorted((d.name, d.status, d.running_replicas) for d in snap.deployments))""",
    ),
    (
        "md",
        """## 3. Traffic drops: each deployment scales to 2, leaving two half-empty nodes""",
    ),
    (
        "code",
        """serving.scale("detector", 2)
serving.scale("ranker", 2)
serving.wait_healthy()
snap = serving.snapshot()
snap""",
    ),
    ("code", "%compact --dry-run"),
    (
        "md",
        """## 4. Compact under load, then the autoscaler terminates the freed node

`%compact` drains the planned node while calling both deployments. The node, once idle, is left to the
autoscaler; the report follows it until the autoscaler has terminated it.""",
    ),
    ("code", "report = %compact"),
    (
        "code",
        """# NBVAL_CHECK_OUTPUT
print("nodes freed:", len(report.nodes_freed), "- terminated by the autoscaler:", len(report.terminated))
print("failed requests:", report.failed_requests)
after = serving.snapshot()
print("workers left:", len(after.workers), "- every deployment healthy:", serving.all_healthy())""",
    ),
    ("code", "report"),
    ("code", "after"),
    ("code", "%servelab down"),
]


def executed(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh kernel; keep only the stream outputs of checked cells, and no widget state
    (nbclient saves every widget's model in the metadata: megabytes a notebook, redrawn on the next run)."""
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            checked = cell.source.startswith(CHECKED)
            cell.outputs = [o for o in cell.outputs if checked and o.output_type == "stream" and o.name == "stdout"]
            if not checked:  # nbval fails a reference cell that has outputs but no execution count
                cell.execution_count = None
    return nb


def main(only: list[str]) -> None:
    """Write every tutorial, or those named on the command line (``03_compaction``)."""
    tutorials = {
        "01_quickstart": QUICKSTART,
        "02_streaming_weights": STREAMING,
        "03_compaction": COMPACTION,
        "04_many_models": MANY_MODELS,
        "05_llm": LLM,
        "06_autoscaling": AUTOSCALING,
    }
    for name, cells in tutorials.items():
        if only and name not in only:
            continue
        nbformat.write(executed(notebook(cells)), HERE / f"{name}.ipynb")
        print(f"wrote {name}.ipynb")


if __name__ == "__main__":
    main(sys.argv[1:])
