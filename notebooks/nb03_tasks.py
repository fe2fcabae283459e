"""Notebook 3's importable task: a worker in any process (Celery's too) imports it by
name, so its messages travel as plain JSON."""

import nbqueue

app = nbqueue.App("anatomy")  # in-process broker and results


@app.task
def add(x, y):
    return x + y
