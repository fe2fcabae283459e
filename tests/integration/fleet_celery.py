"""A real Celery 5.7 app with the tasks of `tests.integration.fleet_app`, same names:
``python -m celery -A tests.integration.fleet_celery worker -P threads``."""

from __future__ import annotations

import os

from celery import Celery

from tests.integration import fleet_app

app = Celery("fleet", broker=fleet_app.BROKER, backend=fleet_app.BROKER)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    worker_prefetch_multiplier=int(os.environ.get("NBQ_TEST_PREFETCH", "4")),
    broker_transport_options={"visibility_timeout": fleet_app.VISIBILITY},
    result_extended=False,
)
app.task(name="fleet.square")(fleet_app.square.run)
app.task(name="fleet.add")(fleet_app.add.run)
