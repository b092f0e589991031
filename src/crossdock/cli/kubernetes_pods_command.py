"""``crossdock kubernetes generate-dag-yaml`` and ``crossdock kubernetes cleanup-pods``.

The first shows, without a cluster, exactly the pod each task of a DAG would run in
(template + pod_override + command), so a pod_override can be reviewed or fed to
``kubectl apply --dry-run``. The second removes worker pods nobody will look at again.

Warm pods (``[kubernetes_executor] warm_pool_size``) are worker pods too: a finished one
is deleted like any other, and an assigned one is its try's pod. An unassigned Running
warm pod is a scheduler's pool and is kept - unless it is older than a live scheduler
ever keeps one (``warm_pod_idle_seconds``, plus the margin after which the pod exits by
itself, plus :data:`STALE_WARM_MARGIN_SECONDS`): then its scheduler is gone and the pod
failed to exit, so it is deleted as stale.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from crossdock.cli.errors import CliError
from crossdock.executors.kubernetes_cli import (  # noqa: F401 - the commands are described there
    DEFAULT_MIN_PENDING_MINUTES, DEFAULT_OUTPUT_FOLDER, MIN_PENDING_MINUTES_FLOOR, kubernetes_pod_commands,
)

#: Owner label value of pods generated for review, never created by a scheduler.
GENERATED_JOB_LABEL = "generate-dag-yaml"
FINISHED_PHASES = ("Succeeded", "Failed")
#: Seconds past a warm pod's own exit time before ``cleanup-pods`` calls an unassigned one stale.
STALE_WARM_MARGIN_SECONDS = 60.0


# -- generate-dag-yaml ------------------------------------------------------------------------
def dag_pods(dag_id: str, *, run_id: str) -> list[dict[str, Any]]:
    """The pod of every task of a parsed DAG (try 1 of ``run_id``), as the executor would build it."""
    from crossdock.cli.dags_command import parse_dags_folder_into_db
    from crossdock.dag.serialization import SerializedDAG
    from crossdock.database import create_session
    from crossdock.kubernetes.kube_config import KubeExecutorConfig
    from crossdock.kubernetes.pod_generator import (
        PodOverrideError, construct_pod, load_pod_template, pod_override_of,
    )
    from crossdock.models import SerializedDagModel
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.runner.command import task_run_command

    import_errors = parse_dags_folder_into_db()
    with create_session() as session:
        row = session.get(SerializedDagModel, dag_id)
        data = row.data if row is not None else None
    failed = [f"{path}: {error}" for path, error in import_errors.items() if f"DAG {dag_id!r}" in error]
    if data is None and failed:  # e.g. a pod_override the parse refused, naming task and field
        raise CliError(f"DAG {dag_id!r} failed to import: {failed[0]}")
    if data is None:
        raise CliError(f"DAG {dag_id!r} not found (see: crossdock dags list, crossdock dags list-import-errors)")
    dag = SerializedDAG.from_dict(data)
    settings = KubeExecutorConfig.from_conf()
    try:
        template = load_pod_template(settings.pod_template_file)
    except PodOverrideError as exc:
        raise CliError(str(exc)) from None
    pods = []
    for task_id in sorted(dag.tasks):
        task = dag.tasks[task_id]
        key = TaskInstanceKey(dag_id, task_id, run_id, 1, -1)
        try:
            pods.append(construct_pod(key=key, command=task_run_command(key, subdir=dag.subdir),
                                      scheduler_job_id=GENERATED_JOB_LABEL, template=template,
                                      pod_override=pod_override_of(task.executor_config),
                                      namespace=settings.namespace, image=settings.worker_image))
        except PodOverrideError as exc:
            raise CliError(f"task {task_id!r}: invalid pod_override: {exc}") from None
    return pods


def generate_dag_yaml(args) -> int:
    import yaml

    run_id = args.run_id or f"manual__{datetime.now(timezone.utc).replace(microsecond=0).isoformat()}"
    pods = dag_pods(args.dag_id, run_id=run_id)
    folder = Path(args.output_path).expanduser() / args.dag_id
    folder.mkdir(parents=True, exist_ok=True)
    for pod in pods:
        from crossdock.kubernetes.pod_generator import ANNOTATION_PREFIX

        task_id = pod["metadata"]["annotations"][f"{ANNOTATION_PREFIX}task_id"]
        path = folder / f"{task_id}.yaml"
        path.write_text(yaml.safe_dump(pod, sort_keys=False), encoding="utf-8")
        print(path)
    print(f"{len(pods)} pod manifest(s) for DAG {args.dag_id!r} written to {folder}")
    return 0


# -- cleanup-pods -------------------------------------------------------------------------------
def _created_at(pod: dict[str, Any]) -> datetime | None:
    stamp = (pod.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


def stale_warm_age(idle_seconds: float) -> timedelta:
    """Age past which an unassigned warm pod has outlived any live scheduler's pool (see the module docstring)."""
    from crossdock.executors.kubernetes_warm_pool import SELF_EXIT_MARGIN_SECONDS

    return timedelta(seconds=idle_seconds + SELF_EXIT_MARGIN_SECONDS + STALE_WARM_MARGIN_SECONDS)


def cleanup_reason(pod: dict[str, Any], *, min_pending: timedelta, now: datetime,
                   stale_warm: timedelta | None = None) -> str | None:
    """Why ``pod`` should be deleted (Succeeded / Failed / Evicted / Pending too long / stale warm), or None.

    :param stale_warm: age past which an unassigned Running warm pod is stale; None keeps them all.
    """
    from crossdock.kubernetes.warm_profile import assignment_of, is_warm

    status = pod.get("status") or {}
    phase, reason = status.get("phase"), status.get("reason")
    if reason == "Evicted":
        return "Evicted"
    if phase in FINISHED_PHASES:
        return phase
    created = _created_at(pod)
    if phase == "Pending":
        if created is not None and now - created > min_pending:
            return f"Pending for more than {int(min_pending.total_seconds() // 60)} minutes"
    elif (stale_warm is not None and phase == "Running" and is_warm(pod) and assignment_of(pod) is None
          and created is not None and now - created > stale_warm):
        return f"unassigned warm pod older than {stale_warm.total_seconds():.0f} s: its scheduler is gone"
    return None


def cleanup_pods(args) -> int:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from crossdock.kubernetes.kube_client import get_kube_client
    from crossdock.kubernetes.kube_config import KubeExecutorConfig
    from crossdock.kubernetes.pod_generator import EXECUTOR_LABEL

    if args.min_pending_minutes < MIN_PENDING_MINUTES_FLOOR:
        raise CliError(f"--min-pending-minutes must be at least {MIN_PENDING_MINUTES_FLOOR}, "
                       f"got {args.min_pending_minutes}")
    settings = KubeExecutorConfig.from_conf()
    namespace = args.namespace or settings.namespace
    core = client.CoreV1Api(get_kube_client())
    min_pending = timedelta(minutes=args.min_pending_minutes)
    stale_warm = stale_warm_age(settings.warm_pod_idle_seconds)
    now = datetime.now(timezone.utc)
    deleted = 0
    token = None
    try:
        while True:
            kwargs = {"label_selector": f"{EXECUTOR_LABEL}=True", "limit": 500}
            if token:
                kwargs["_continue"] = token
            listing = json.loads(core.list_namespaced_pod(namespace, _preload_content=False, **kwargs).data)
            for pod in listing.get("items") or []:
                reason = cleanup_reason(pod, min_pending=min_pending, now=now, stale_warm=stale_warm)
                if reason is None:
                    continue
                name = pod["metadata"]["name"]
                try:
                    core.delete_namespaced_pod(name, namespace, _preload_content=False)
                except ApiException as exc:
                    if exc.status != 404:
                        print(f"could not delete pod {namespace}/{name}: {exc.status} {exc.reason}")
                        continue
                print(f"deleted pod {namespace}/{name} ({reason})")
                deleted += 1
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                break
    except ApiException as exc:
        raise CliError(f"cannot list pods in namespace {namespace!r}: {exc.status} {exc.reason}") from None
    print(f"{deleted} pod(s) deleted in namespace {namespace!r}")
    return 0
