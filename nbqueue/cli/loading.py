"""Finding the app named by ``-A module[:attribute]``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

__all__ = ["EX_UNAVAILABLE", "EX_USAGE", "add_app_option", "load_app"]

EX_USAGE = 2
EX_UNAVAILABLE = 69


class AppNotFound(SystemExit):
    """``-A`` names nothing that is an app: a usage error, exit code 2."""

    def __init__(self, message: str) -> None:
        print(f"Error: {message}", file=sys.stderr)
        super().__init__(EX_USAGE)


def add_app_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-A",
        "--app",
        required=True,
        metavar="MODULE[:APP]",
        help="the app: a module (its `app` attribute or only App) or module:attribute",
    )


def load_app(spec: str) -> Any:
    """Import ``module[:attribute]`` (the current directory is on the path, as for Celery)."""
    from .. import App

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(
            f"unable to load the app {spec!r}: module {module_name!r} was not found ({exc})"
        ) from None
    if attribute:
        obj: Any = module
        for part in attribute.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, App):
            raise AppNotFound(f"{spec!r} is not an nbqueue.App")
        return obj
    found = [v for v in vars(module).values() if isinstance(v, App)]
    app = getattr(module, "app", None)
    if isinstance(app, App):
        return app
    if len(found) == 1:
        return found[0]
    raise AppNotFound(
        f"module {module_name!r} defines {len(found)} apps; name one with "
        f"-A {module_name}:<attribute>"
    )
