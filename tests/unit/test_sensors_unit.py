"""Sensor settings and their checks, without a scheduler."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crossdock import DAG, PythonSensor
from crossdock.dag.exceptions import AirflowRescheduleException, AirflowSensorTimeout, DagDefinitionError
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.context import RuntimeTaskInstance, build_context
from crossdock.runner.try_inputs import TryInputs
from crossdock.runner.try_values import TryValues


def run(sensor, handed=None):
    values = TryValues(dag_id=sensor.dag_id, task_id=sensor.task_id, map_index=-1, inputs=TryInputs(run=handed or {}))
    ti = RuntimeTaskInstance(TaskInstanceKey(sensor.dag_id, sensor.task_id, "r", 1), values=values)
    return sensor.execute(build_context(dag=sensor.dag, task=sensor, ti=ti, inputs=values.inputs))


def test_bad_settings_are_definition_errors():
    with pytest.raises(DagDefinitionError, match="mode must be one of poke, reschedule"):
        PythonSensor(task_id="s", python_callable=bool, mode="sometimes", dag=DAG("a"))
    with pytest.raises(DagDefinitionError, match="poke_interval must be a non-negative"):
        PythonSensor(task_id="s", python_callable=bool, poke_interval=-1, dag=DAG("b"))
    with pytest.raises(DagDefinitionError, match="python_callable must be callable"):
        PythonSensor(task_id="s", python_callable=None, dag=DAG("c"))


def test_exponential_backoff_doubles_up_to_max_wait():
    sensor = PythonSensor(task_id="s", python_callable=bool, poke_interval=1, exponential_backoff=True,
                          max_wait=timedelta(seconds=5), dag=DAG("d"))
    assert [sensor._interval(n) for n in range(5)] == [1, 2, 4, 5, 5]


def test_reschedule_mode_ends_the_try_and_the_timeout_counts_from_the_first_poke():
    sensor = PythonSensor(task_id="s", python_callable=lambda: False, mode="reschedule", poke_interval=30,
                          timeout=60, dag=DAG("e"))
    with pytest.raises(AirflowRescheduleException) as raised:
        run(sensor)
    assert raised.value.first_poke is not None
    # handed a first poke two minutes ago: past the timeout, it fails at once
    from datetime import datetime, timezone

    long_ago = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat()
    with pytest.raises(AirflowSensorTimeout, match="timed out"):
        run(sensor, {"sensor_first_poke": long_ago, "sensor_pokes": "3"})
