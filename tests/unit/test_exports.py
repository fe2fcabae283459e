"""The public surface is exactly what `__all__` says, in every public module."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import nbqueue

PUBLIC_TOP_LEVEL = {
    "App",
    "AsyncResult",
    "EagerResult",
    "GroupResult",
    "Signature",
    "Step",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "exceptions",
    "group",
    "progress",
    "signature",
    "states",
    "xmap",
    "xstarmap",
}


def test_top_level_all_is_exactly_the_public_api():
    assert set(nbqueue.__all__) == PUBLIC_TOP_LEVEL
    for name in nbqueue.__all__:
        assert hasattr(nbqueue, name), name


def _modules():
    for info in pkgutil.walk_packages(nbqueue.__path__, "nbqueue."):
        if info.name.split(".")[-1].startswith("_") or ".jupyter" in info.name:
            continue
        yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_public_module_declares_all_and_defines_it(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported!r}"


def test_exception_tree_has_one_root():
    from nbqueue import exceptions

    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.NbqueueError), name
