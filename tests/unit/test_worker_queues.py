"""``[worker_queues]``: each queue's bounds, the formula they feed, and bad entries named.

The formula is what the autoscaler, ``crossdock queues`` and the KEDA export all use, so
its edges (zero load, the min and max clamps, rounding up) are pinned here.
"""

from __future__ import annotations

import json

import pytest

from crossdock.configuration import ConfigError, conf
from crossdock.monitoring.queue_monitor import executor_for_queue
from crossdock.monitoring.queue_status import desired_workers
from crossdock.monitoring.worker_queues import WorkerQueues, WorkerQueueSpec


def configure(monkeypatch, queues=None, **keys):
    if queues is not None:
        monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__QUEUES", json.dumps(queues))
    for key, value in keys.items():
        monkeypatch.setenv(key, str(value))
    conf.reload()


def test_a_listed_queue_takes_its_own_numbers_and_others_the_defaults(monkeypatch):
    configure(monkeypatch, {"burst": {"min_workers": 0, "max_workers": 4, "max_tasks_per_worker": 4,
                                      "resources": {"limits": {"memory": "2Gi"}}}},
              CROSSDOCK__CELERY__WORKER_CONCURRENCY=8)
    queues = WorkerQueues.from_config()
    burst = queues.spec_for("burst")
    assert (burst.min_workers, burst.max_workers, burst.max_tasks_per_worker) == (0, 4, 4)
    assert burst.configured and burst.resources == {"limits": {"memory": "2Gi"}}
    other = queues.spec_for("reports")
    # default_max_tasks_per_worker = 0 means [celery] worker_concurrency
    assert (other.min_workers, other.max_workers, other.max_tasks_per_worker) == (1, 10, 8)
    assert not other.configured and other.name == "reports"
    assert queues.names() == ["burst"]


def test_a_partial_entry_fills_in_from_the_defaults(monkeypatch):
    configure(monkeypatch, {"etl": {"max_workers": 3}}, CROSSDOCK__WORKER_QUEUES__DEFAULT_MIN_WORKERS=0,
              CROSSDOCK__WORKER_QUEUES__DEFAULT_MAX_TASKS_PER_WORKER=5)
    spec = WorkerQueues.from_config().spec_for("etl")
    assert (spec.min_workers, spec.max_workers, spec.max_tasks_per_worker) == (0, 3, 5)


@pytest.mark.parametrize("entry, message", [
    ({"min_workers": 5, "max_workers": 2}, "min_workers (5) is more than max_workers (2)"),
    ({"max_tasks_per_worker": 0}, "max_tasks_per_worker must be at least 1, got 0"),
    ({"max_tasks_per_worker": -3}, "max_tasks_per_worker must be at least 1, got -3"),
    ({"min_workers": -1}, "min_workers must be at least 0"),
    ({"max_workers": "many"}, "max_workers must be a whole number"),
    ({"max_workers": 2.5}, "max_workers must be a whole number"),
    ({"max_worker": 2}, "unknown key(s) max_worker"),
    ({"resources": "big"}, "resources must be a JSON object"),
    (7, "must be a JSON object"),
])
def test_a_bad_queue_entry_fails_naming_the_queue_and_key(monkeypatch, entry, message):
    configure(monkeypatch, {"burst": entry})
    with pytest.raises(ConfigError) as raised:
        WorkerQueues.from_config()
    assert "queue 'burst'" in str(raised.value)
    assert message in str(raised.value)


def test_bad_defaults_fail_too(monkeypatch):
    configure(monkeypatch, CROSSDOCK__WORKER_QUEUES__DEFAULT_MIN_WORKERS=3,
              CROSSDOCK__WORKER_QUEUES__DEFAULT_MAX_WORKERS=2)
    with pytest.raises(ConfigError, match="min_workers \\(3\\) is more than max_workers \\(2\\)"):
        WorkerQueues.from_config()


def test_the_queues_key_must_be_a_json_object(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__QUEUES", "[1, 2]")
    conf.reload()
    with pytest.raises(ConfigError, match="must be a JSON object"):
        WorkerQueues.from_config()


SPEC = WorkerQueueSpec("burst", min_workers=0, max_workers=4, max_tasks_per_worker=4)


@pytest.mark.parametrize("queued, running, expected", [
    (0, 0, 0),      # nothing to do: scale to zero
    (1, 0, 1),      # one waiting task on an empty queue starts a worker
    (4, 0, 1),
    (5, 0, 2),      # rounds up
    (3, 3, 2),      # running tasks count as load
    (300, 0, 4),    # capped at max
])
def test_the_formula_rounds_up_within_min_and_max(queued, running, expected):
    workers, reason = desired_workers(SPEC, queued=queued, running=running)
    assert workers == expected
    assert f"({queued} queued + {running} running) / 4 per worker" in reason


def test_the_reason_says_when_a_bound_decided():
    assert "capped at max_workers 4" in desired_workers(SPEC, queued=300, running=0)[1]
    floor = WorkerQueueSpec("q", min_workers=2, max_workers=4, max_tasks_per_worker=4)
    workers, reason = desired_workers(floor, queued=0, running=0)
    assert workers == 2 and "raised to min_workers 2" in reason


@pytest.mark.parametrize("executor, rules, queue, expected", [
    ("CeleryKubernetesExecutor", "", "kubernetes", "KubernetesExecutor"),
    ("CeleryKubernetesExecutor", "", "default", "CeleryExecutor"),
    ("CeleryKubernetesExecutor", "gpu-*=KubernetesExecutor", "gpu-a100", "KubernetesExecutor"),
    ("CeleryExecutor", "", "anything", "CeleryExecutor"),
    ("LocalExecutor,CeleryExecutor", "heavy=CeleryExecutor", "heavy", "CeleryExecutor"),
    ("LocalExecutor,CeleryExecutor", "heavy=CeleryExecutor", "light", "LocalExecutor"),
])
def test_each_queue_is_shown_with_the_executor_its_tasks_are_routed_to(monkeypatch, executor, rules, queue,
                                                                      expected):
    configure(monkeypatch, CROSSDOCK__CORE__EXECUTOR=executor, CROSSDOCK__EXECUTOR_ROUTING__RULES=rules)
    assert executor_for_queue(queue) == expected


def test_local_workers_size_the_default_tasks_per_worker_unless_the_config_does(monkeypatch):
    configure(monkeypatch, {"burst": {"max_workers": 2}}, CROSSDOCK__CELERY__WORKER_CONCURRENCY=16)
    local = WorkerQueues.from_config(tasks_per_worker=2)
    assert local.spec_for("other").max_tasks_per_worker == 2
    assert local.spec_for("burst").max_tasks_per_worker == 2  # a listed queue without its own number
    configure(monkeypatch, CROSSDOCK__WORKER_QUEUES__DEFAULT_MAX_TASKS_PER_WORKER=5)
    assert WorkerQueues.from_config(tasks_per_worker=2).spec_for("other").max_tasks_per_worker == 5
