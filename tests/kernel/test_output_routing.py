"""In a real kernel, a task's print, log and display land under the cell that started it,
even when another cell is running by the time the task writes."""

from __future__ import annotations

SETUP = """
%load_ext nbqueue
import logging, threading
import nbqueue
from IPython.display import HTML, display
app = nbqueue.App('route')
gate = threading.Event()
"""

TASK = """%%task shout(word)
gate.wait(30)
print('printed', word)
logging.getLogger('task').warning('logged %s', word)
display(HTML(f'<b>shown {word}</b>'))
return word
"""


def test_output_of_a_task_goes_to_the_cell_that_sent_it(raw_kernel) -> None:
    kernel = raw_kernel
    kernel.run(SETUP)
    kernel.run(TASK)
    kernel.run("%worker start -c 2")
    sender = kernel.run("r = shout.delay('hello')")  # returns while the task waits
    other = kernel.execute("print('the next cell'); gate.set(); r.get(timeout=30)")

    def routed() -> bool:
        return (
            kernel.idle(other)
            and "printed hello" in kernel.text(sender)
            and "logged hello" in kernel.text(sender)
            and "shown hello" in kernel.displayed(sender)
        )

    kernel.pump(routed, timeout=60)
    assert kernel.text(other) == "the next cell\n"
    assert "shown" not in kernel.displayed(other)
    assert "printed hello" in kernel.text(sender, "stdout")
    assert "logged hello" in kernel.text(sender, "stderr")
    kernel.run("%worker stop")


def test_output_from_a_process_pool_child_goes_to_the_cell_that_sent_it(raw_kernel) -> None:
    kernel = raw_kernel
    kernel.run(SETUP)
    kernel.run(
        "import os, tempfile\nfifo = os.path.join(tempfile.mkdtemp(), 'gate')\nos.mkfifo(fifo)"
    )
    # the child blocks on the FIFO until the next cell opens it for writing
    kernel.run(
        "%%task shout(word, fifo)\nwith open(fifo) as f:\n    f.read()\nprint('printed', word)"
    )
    kernel.run("%worker start -c 1 -P processes")
    sender = kernel.run("r = shout.delay('hello', fifo)")
    other = kernel.execute(
        "print('the next cell')\nwith open(fifo, 'w') as f:\n    f.write('go')\nr.get(timeout=60)"
    )
    kernel.pump(lambda: kernel.idle(other) and "printed hello" in kernel.text(sender), 90)
    assert kernel.text(other) == "the next cell\n"
    assert kernel.text(sender, "stdout") == "printed hello\n"
    kernel.run("%worker stop")


def test_a_background_cell_prints_under_itself_and_returns_a_handle(raw_kernel) -> None:
    kernel = raw_kernel
    kernel.run(SETUP)
    kernel.run("%worker start -c 1")
    background = kernel.run(
        "%%task --background --name job\ngate.wait(30)\nprint('background says hi')\n6 * 7"
    )
    assert "application/vnd.jupyter.widget-view+json" in kernel.displayed(background)
    other = kernel.execute("handle = _\ngate.set()\nprint(handle.get(timeout=30))")
    kernel.pump(lambda: kernel.idle(other) and "says hi" in kernel.text(background), 60)
    assert kernel.text(other) == "42\n"
    kernel.run("%worker stop")
