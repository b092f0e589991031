"""The API's request and response bodies, as pydantic models (the OpenAPI document is made from them).

Names and fields follow Airflow 2's stable REST API; fields crossdock adds are said so.
Responses are what :mod:`crossdock.operations` returns, checked against these on the
way out, so the document cannot drift from what is sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Body(BaseModel):
    """A request body: unknown fields are refused (a typo must not be ignored quietly)."""

    model_config = ConfigDict(extra="forbid")


class Tag(Model):
    name: str


class RecentRun(Model):
    """crossdock: one of a DAG's newest runs, as the DAG list shows them."""

    dag_run_id: str
    state: Optional[str]
    logical_date: Optional[datetime]
    start_date: Optional[datetime]
    end_date: Optional[datetime]


class Dag(Model):
    dag_id: str
    root_dag_id: Optional[str]
    is_paused: bool
    is_active: bool
    is_subdag: bool
    fileloc: str
    description: Optional[str]
    owners: list[str]
    tags: list[Tag]
    schedule_interval: Optional[dict[str, Any]]
    timetable_description: Optional[str]
    catchup: bool
    start_date: Optional[datetime]
    max_active_runs: Optional[int]
    max_active_tasks: Optional[int]
    last_parsed_time: Optional[datetime]
    next_dagrun: Optional[datetime]
    has_import_errors: bool
    default_view: str
    recent_dag_runs: list[RecentRun] = Field(description="crossdock: the newest runs, newest first")
    last_dag_run_state: Optional[str] = Field(description="crossdock: the newest run's state")


class DagDetail(Dag):
    doc_md: Optional[str]
    params: dict[str, Any]


class DagCollection(Model):
    dags: list[Dag]
    total_entries: int


class DagPatch(Body):
    is_paused: bool


class DagRun(Model):
    dag_run_id: str
    dag_id: str
    run_type: str
    state: str
    logical_date: Optional[datetime]
    execution_date: Optional[datetime]
    data_interval_start: Optional[datetime]
    data_interval_end: Optional[datetime]
    queued_at: Optional[datetime]
    start_date: Optional[datetime]
    end_date: Optional[datetime]
    external_trigger: bool
    conf: dict[str, Any]
    last_scheduling_decision: Optional[datetime]
    note: Optional[str]


class DagRunCollection(Model):
    dag_runs: list[DagRun]
    total_entries: int


class DagRunTrigger(Body):
    dag_run_id: Optional[str] = Field(None, max_length=250)
    logical_date: Optional[str] = Field(None, description="ISO 8601; default: now")
    execution_date: Optional[str] = Field(None, description="Airflow's older name for logical_date")
    conf: Optional[dict[str, Any]] = None
    note: Optional[str] = None


class TaskInstance(Model):
    task_id: str
    dag_id: str
    dag_run_id: str
    map_index: int
    execution_date: Optional[datetime]
    start_date: Optional[datetime]
    end_date: Optional[datetime]
    duration: Optional[float]
    state: Optional[str]
    try_number: int
    max_tries: int
    hostname: str = Field(description="the Celery worker's node name, or the pod's name on the Kubernetes path")
    unixname: Optional[str]
    pool: str
    pool_slots: int
    queue: Optional[str]
    priority_weight: Optional[int]
    operator: Optional[str]
    queued_when: Optional[datetime]
    pid: Optional[int]
    executor: Optional[str]
    executor_config: str
    note: Optional[str]
    routing_reason: Optional[str] = Field(description="crossdock: why the scheduler sent it to its executor")
    failure_reason: Optional[str] = Field(description="crossdock: the line its last failed try ended with")
    external_executor_id: Optional[str] = Field(description="crossdock: the Celery task id or the pod name")
    next_retry_at: Optional[datetime] = Field(description="crossdock: when an up_for_retry try runs again")
    task_group_id: Optional[str] = Field(description="crossdock: the innermost task group holding the task")


class TaskInstanceCollection(Model):
    task_instances: list[TaskInstance]
    total_entries: int


class TaskInstanceReference(Model):
    """A task instance an action touched; crossdock adds what it was and how the change went."""

    task_id: str
    dag_id: str
    dag_run_id: str
    execution_date: Optional[datetime] = None
    map_index: int = -1
    state: Optional[str] = Field(None, description="crossdock: its state before the action")
    try_number: Optional[int] = None
    action: Optional[str] = Field(None, description="crossdock: clear, success or failed")
    applied: Optional[bool] = Field(None, description="crossdock: written already (no scheduler active), "
                                                      "else requested from the active scheduler")
    request_id: Optional[int] = Field(None, description="crossdock: the scheduler's request that carries it")


class TaskInstanceReferenceCollection(Model):
    task_instances: list[TaskInstanceReference]


class ClearTaskInstances(Body):
    """Airflow's body; ``dry_run`` and ``only_failed`` default to true as in Airflow."""

    dry_run: bool = True
    task_ids: Optional[list[str]] = None
    start_date: Optional[str] = None
    end_date: Optional[str] = None
    only_failed: bool = True
    only_running: bool = False
    include_subdags: bool = False
    include_parentdag: bool = False
    reset_dag_runs: bool = True
    dag_run_id: Optional[str] = None
    include_upstream: bool = False
    include_downstream: bool = False
    include_future: bool = False
    include_past: bool = False


class TaskInstancePatch(Body):
    dry_run: bool = False
    new_state: Literal["success", "failed"]
    include_upstream: bool = Field(False, description="crossdock: also the tasks upstream")
    include_downstream: bool = Field(False, description="crossdock: also the tasks downstream")
    include_past: bool = Field(False, description="crossdock: also in the runs before this one")
    include_future: bool = Field(False, description="crossdock: also in the runs after this one")


class Task(Model):
    task_id: str
    operator_name: str
    class_ref: dict[str, Any]
    downstream_task_ids: list[str]
    upstream_task_ids: list[str]
    trigger_rule: str
    queue: Optional[str]
    pool: str
    pool_slots: int
    priority_weight: int
    retries: int
    retry_delay: dict[str, Any]
    retry_exponential_backoff: bool
    execution_timeout: Optional[float]
    depends_on_past: bool
    wait_for_downstream: bool
    is_mapped: bool
    executor: Optional[str]
    task_group_id: Optional[str]


class TaskCollection(Model):
    tasks: list[Task]
    total_entries: int
    task_groups: dict[str, dict[str, Any]] = Field(description="crossdock: group_id → label, parent, tasks, groups")


class LogChunk(Model):
    content: str
    continuation_token: str = Field(description="pass back as ?token= for what follows")
    offset: int = Field(description="crossdock: the byte offset the next read starts at")
    finished: bool = Field(description="crossdock: the try has ended and all of its log was sent")
    source: str = Field(description="crossdock: the file or pod the log was read from")
    state: Optional[str]
    try_number: int


class Pool(Model):
    name: str
    slots: int
    occupied_slots: int
    running_slots: int
    queued_slots: int
    open_slots: int
    scheduled_slots: int = 0
    deferred_slots: int = 0
    description: Optional[str]
    include_deferred: bool = False


class PoolCollection(Model):
    pools: list[Pool]
    total_entries: int


class PoolBody(Body):
    name: str = Field(min_length=1, max_length=256)
    slots: int = Field(ge=0, le=2 ** 31 - 1)
    description: Optional[str] = None
    include_deferred: bool = False


class PoolPatch(Body):
    name: Optional[str] = Field(None, max_length=256)
    slots: Optional[int] = Field(None, ge=0, le=2 ** 31 - 1)
    description: Optional[str] = None
    include_deferred: Optional[bool] = None


class ImportError_(Model):
    import_error_id: int
    filename: str
    stack_trace: str
    timestamp: Optional[datetime]


class ImportErrorCollection(Model):
    import_errors: list[ImportError_]
    total_entries: int


class Connection(Model):
    connection_id: str
    conn_type: Optional[str]
    description: Optional[str]
    host: Optional[str]
    login: Optional[str]
    schema_: Optional[str] = Field(alias="schema", serialization_alias="schema")
    port: Optional[int]
    extra: Optional[str] = Field(description="JSON; secret-named values shown as ***")
    has_password: bool = Field(description="crossdock: a password is set (it is never shown)")
    source: str = Field(description="crossdock: environment or file")


class ConnectionCollection(Model):
    connections: list[Connection]
    total_entries: int
