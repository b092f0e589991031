"""``CeleryQueueSensor``: wait until a Celery queue has drained, as Airflow's Celery provider does.

Airflow's sensor asks the workers (Celery's inspect ``reserved``/``active``/``scheduled``)
from inside the try. A crossdock try holds no broker credentials (they are secrets and
stay with the scheduler and the workers), so the scheduler answers instead when it
queues each try: how many task instances of ``celery_queue`` are queued or running —
exactly the tasks Celery's workers reserve, run or hold scheduled for it, counted where
they are sent from. The sensor's own try is never counted, so it may run on the queue it
watches; with ``target_task_id`` only that task of the same DAG run counts. Like the
ExternalTaskSensor it therefore always runs in ``reschedule`` mode, one look per try,
freeing its worker slot between looks. ``crossdock queues`` shows what the broker and
the workers themselves report.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from crossdock.dag.sensors import EXTERNAL_STATE_KEY, BaseSensorOperator

log = logging.getLogger("crossdock.task")


class CeleryQueueSensor(BaseSensorOperator):
    """Waits until no task instance of ``celery_queue`` (but its own) is queued or running.

    :param celery_queue: the Celery queue to watch.
    :param target_task_id: wait only for this task of the same DAG run to leave the queue.
    """

    template_fields = ("celery_queue", "target_task_id")

    def __init__(self, task_id: str, *, celery_queue: str, target_task_id: str | None = None, **kwargs: Any):
        if kwargs.get("mode", "reschedule") != "reschedule":
            log.info("CeleryQueueSensor %s runs in reschedule mode: each try sees what the scheduler "
                     "counted on the queue when it queued it", task_id)
        kwargs["mode"] = "reschedule"
        super().__init__(task_id, **kwargs)
        if not isinstance(celery_queue, str) or not celery_queue:
            raise self._definition_error(f"celery_queue must be a queue name, not {celery_queue!r}")
        self.celery_queue = celery_queue
        self.target_task_id = target_task_id

    @property
    def external_watch(self) -> dict[str, Any]:
        """What the scheduler counts for this sensor (kept in the serialized task)."""
        return {"queue": self.celery_queue, "target_task_id": self.target_task_id}

    def poke(self, context: Mapping[str, Any]) -> bool:
        handed = getattr(getattr(context.get("ti"), "values", None), "inputs", None)
        held = handed.run.get(EXTERNAL_STATE_KEY) if handed is not None else None
        if held is None:
            raise RuntimeError("CeleryQueueSensor needs the count the scheduler hands each try; "
                               "run it through the scheduler (not 'tasks test')")
        what = f"{self.target_task_id} on queue {self.celery_queue}" if self.target_task_id else \
            f"queue {self.celery_queue}"
        log.info("Poking %s: %s task instances queued or running", what, held)
        return int(held) == 0
