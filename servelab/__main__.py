"""Command line: ``python -m servelab demo``."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="servelab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="stream a generated checkpoint and print throughput")
    demo.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "servelab", help="where the checkpoint is written")
    demo.add_argument("--mib", type=int, default=512, help="checkpoint size in MiB")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from servelab.demo import run_demo

        run_demo(args.cache, args.mib << 20)


if __name__ == "__main__":
    main()
