"""Seeing and sizing the queues: the queue monitor, Prometheus metrics, the worker autoscaler.

One set of numbers per queue (:class:`~crossdock.monitoring.queue_status.QueueStatus`),
read by :mod:`crossdock.monitoring.queue_monitor` and shared by ``crossdock queues``, the
scheduler's ``/metrics``, the autoscaler and the ``CeleryQueueSensor``.
"""
