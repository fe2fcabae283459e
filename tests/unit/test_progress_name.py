"""``nbqueue.progress`` is the function, however often the model module is imported."""

from __future__ import annotations

import importlib

import nbqueue


def test_progress_stays_a_function_after_the_model_module_is_imported() -> None:
    model = importlib.import_module("nbqueue.progress")
    from nbqueue.progress import Progress  # what the renderers do

    assert callable(nbqueue.progress)
    assert model.Progress is Progress
