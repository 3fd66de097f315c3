"""Magic help and traitlets defaults: no cluster needed."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from servelab.kernel import ServelabMagics
from servelab.kernel.cell import defined_classes
from servelab.kernel.magics import probe_urls
from servelab.serving import DeploymentInfo
from tests.kernel import failure


def test_help_lists_every_option() -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "servelab")
    doc = shell.find_line_magic("compact").__doc__
    for option in ("--dry-run", "--objective", "--max-moves", "--keep", "--no-probe"):
        assert option in doc
    assert "--weights" in shell.find_cell_magic("deploy").__doc__
    assert "%deploy llm NAME --model URI" in shell.find_line_magic("deploy").__doc__


def test_help_starts_with_the_usage_line() -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "servelab")

    doc = shell.find_line_magic("servelab").__doc__

    assert doc.startswith("%servelab [--nodes NODES]"), doc[:40]  # not IPython's reST "::"


@pytest.mark.parametrize("line", ["%servelab up --node 2", "%scale x 1 --ap a", "%compact --dry"])
def test_an_abbreviated_option_is_refused_not_guessed(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "servelab")

    shown = failure(shell, line, capsys)

    assert "unrecognized arguments: --" in shown and "for the options" in shown, shown


def test_deploy_as_a_line_without_llm_says_how_to_use_it(capsys: pytest.CaptureFixture[str]) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "servelab")

    shown = failure(shell, "%deploy classifier --replicas 2", capsys)

    assert shown.startswith("servelab: %deploy as a line deploys an LLM: %deploy llm NAME --model URI")


def test_defaults_come_from_config() -> None:
    config = Config()
    config.ServelabMagics.nodes = 5
    config.ServelabMagics.view_interval_s = 0.5
    magics = ServelabMagics(shell=InteractiveShell.instance(), config=config)
    # gpus_per_node: None lets up() split the machine's GPUs (2 logical ones where it has none).
    assert (magics.nodes, magics.view_interval_s, magics.gpus_per_node) == (5, 0.5, None)
    config.ServelabMagics.gpus_per_node = 1.0
    assert ServelabMagics(shell=InteractiveShell.instance(), config=config).gpus_per_node == 1.0


def test_the_classes_a_cell_defines() -> None:
    assert defined_classes("import torch\nclass A: pass\nx = 1\nclass B(A): pass\n") == ["A", "B"]
    assert defined_classes("def f():\n    class Inner: pass\n") == []


def test_compaction_probes_one_url_per_application_and_an_llm_app_under_v1() -> None:
    def info(name: str, app: str, target: int = 1, route: str | None = "/x") -> DeploymentInfo:
        return DeploymentInfo(name, app, "HEALTHY", target, target, target, {}, route)

    deployments = [
        info("Pipeline", "shop"), info("Ranker", "shop"), info("hidden", "internal", route=None),
        info("idle", "idle", target=0), info("LLMServer:chat", "chat"), info("OpenAiIngress", "chat"),
    ]  # fmt: skip

    urls = probe_urls(deployments, lambda name, app: f"http://proxy/{app}")

    assert urls == ["http://proxy/shop", "http://proxy/chat/v1/models"]
