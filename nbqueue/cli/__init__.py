"""The ``nbqueue`` command (also ``python -m nbqueue``), shaped like Celery's CLI.

Exit codes follow Celery's: 0 success, 1 failure, 2 usage errors (bad options, an app that
cannot be loaded), 69 (``EX_UNAVAILABLE``) when no worker replied.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import commands, demo, remote, worker

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbqueue", description="nbqueue: an embeddable Celery")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    demo.add_parser(sub)
    worker.add_parser(sub)
    commands.add_parsers(sub)
    remote.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)
