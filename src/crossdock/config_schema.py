"""Every configuration section and key crossdock reads, with its type, default and meaning.

One declaration for the whole product, loaded by :mod:`crossdock.configuration` without
importing any executor, Celery or the Kubernetes client: ``crossdock config`` can list and
explain ``[celery]`` on a machine that never imports Celery, start-up checks every section
before the first executor is built, and a misspelt key can be told apart from a real one.
The modules that read a section keep only how they use it (``KubeExecutorConfig``,
``CelerySettings``), not what it is.

Section and key names follow Airflow's where Airflow has one, so an Airflow user can carry
their ``airflow.cfg`` knowledge over. ``{CROSSDOCK_HOME}`` in a default is expanded when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One documented configuration key."""

    default: Any
    kind: str  # "str" | "int" | "float" | "bool" | "json" | "json_object"
    help: str


#: Seconds an unacknowledged message stays invisible on brokers that emulate acks
#: (Redis, SQS): longer than any task should run, so a slow task is not redelivered.
DEFAULT_VISIBILITY_TIMEOUT = 86400

CORE: dict[str, Option] = {
    "executor": Option("LocalExecutor", "str",
                       "Executor name or dotted path; a comma-separated list configures several, "
                       "the first being the default."),
    "parallelism": Option(32, "int", "Most task instances running at once, across all DAGs."),
    "max_active_tasks_per_dag": Option(16, "int", "Most running task instances of one DAG."),
    "max_active_runs_per_dag": Option(16, "int", "Default max_active_runs of a DAG."),
    "dags_folder": Option("{CROSSDOCK_HOME}/dags", "str", "Folder scanned for DAG files."),
    "default_queue": Option("default", "str", "Queue of an operator that names none."),
    "default_pool_slots": Option(128, "int", "Slots of the built-in default_pool."),
    "dags_are_paused_at_creation": Option(True, "bool",
                                          "A DAG seen for the first time starts paused, as in Airflow: no "
                                          "scheduled runs, and manual runs wait in queued until it is "
                                          "unpaused (crossdock dags unpause DAG_ID)."),
    "dagbag_import_timeout": Option(30.0, "float",
                                    "Seconds a DAG file may take to import before it is killed."),
    "load_examples": Option(False, "bool", "Also load crossdock's example DAGs."),
    "hostname": Option("", "str", "Hostname recorded on task instances; empty means the machine's."),
    "task_commands_only": Option(True, "bool",
                                 "Executors and workers run only 'crossdock tasks run ...' commands. Turn "
                                 "off only to drive executors directly with commands of your own."),
    "cache_dag_files_in_workers": Option(True, "bool",
                                         "A warm process that forks task tries (the LocalExecutor's, a "
                                         "Celery worker's pool process) imports each DAG file once and "
                                         "its forks inherit the loaded DAGs. Off: every try imports it."),
    "max_map_length": Option(1024, "int",
                             "Most instances one mapped task (.expand) may have; a longer list fails it."),
    "task_callback_timeout": Option(60.0, "float",
                                    "Seconds a task's on_*_callback may run in its try before it is "
                                    "stopped and logged; the try's state does not change either way."),
    "max_xcom_size": Option(49152, "int",
                            "Most bytes one XCom value may have as JSON; a try pushing a larger one fails. "
                            "Values travel through the executors' channels and with downstream task "
                            "commands, so they are for small results (ids, paths, counts), not data."),
    "dag_run_conf_overrides_params": Option(True, "bool",
                                            "A run's conf overrides the DAG's and tasks' params of the "
                                            "same name in context['params'] (every key of the conf)."),
    "strict_config": Option(False, "bool",
                            "A key or section crossdock does not know (in the file or a CROSSDOCK__ "
                            "variable) stops start-up with an error instead of a logged warning."),
    "airflow_import_alias": Option(False, "bool",
                                   "airflow.* imports in DAG files and task tries resolve to crossdock's "
                                   "equivalents, so Airflow 2.x DAG files run unchanged (a name crossdock "
                                   "lacks fails the import); files naming 'airflow' and 'dag' are scanned "
                                   "as DAG files too. Never shadows a real Airflow installed beside it."),
    "sensitive_var_conn_names": Option("", "str",
                                       "Comma-separated words that also mark a Variable key or connection "
                                       "extra key as secret (its value masked in task logs), besides "
                                       "Airflow's password, secret, token, api_key, ..."),
}

DATABASE: dict[str, Option] = {
    "sql_alchemy_conn": Option("sqlite:///{CROSSDOCK_HOME}/crossdock.db", "str",
                               "SQLAlchemy URL of the metadata database."),
    "sql_alchemy_pool_size": Option(5, "int", "Connection pool size (not used for SQLite)."),
    "sqlite_busy_timeout": Option(30.0, "float", "Seconds SQLite waits on a locked database."),
    "connect_timeout": Option(10, "int", "Seconds to wait when connecting to the database."),
}

SCHEDULER: dict[str, Option] = {
    "task_queued_timeout": Option(600.0, "float",
                                  "Seconds a task may stay queued before it is revoked and requeued."),
    "num_stuck_in_queued_retries": Option(2, "int", "Requeues of a task stuck in queued before it fails."),
    "scheduler_heartbeat_sec": Option(5.0, "float", "Seconds between heartbeats of the scheduler job."),
    "scheduler_health_check_threshold": Option(30.0, "float",
                                               "Seconds without a heartbeat after which a job is dead."),
    "dag_dir_list_interval": Option(30.0, "float", "Seconds between re-scans of the DAG folder."),
    "min_loop_sleep": Option(0.002, "float", "Shortest pause of the scheduler loop when busy."),
    "max_loop_sleep": Option(0.2, "float", "Longest pause of the scheduler loop when idle."),
    "new_runs_poll_interval": Option(0.2, "float", "Seconds between checks for triggered DAG runs."),
    "orphaned_tasks_check_interval": Option(300.0, "float",
                                            "Seconds between checks for tasks of dead schedulers."),
    "standby_takeover_seconds": Option(10.0, "float",
                                       "Most seconds from the active scheduler's death to a standby "
                                       "being active (its lease times out in 60 % of it)."),
}

LOGGING: dict[str, Option] = {
    "base_log_folder": Option("{CROSSDOCK_HOME}/logs", "str", "Root folder of task logs."),
    "logging_level": Option("INFO", "str", "Level of crossdock's own log messages."),
    "task_log_to_stdout": Option(False, "bool",
                                 "Copy each try's log to the runner's stdout too (pods set it, so the "
                                 "container log shows what the task printed)."),
}

LOCAL_EXECUTOR: dict[str, Option] = {
    "fork": Option(True, "bool",
                   "Run each task in a fork of a warm process (True) or a new interpreter (False)."),
}

EXECUTOR_ROUTING: dict[str, Option] = {
    "rules": Option("", "str", "Queue glob = executor pairs, checked in order (newline or comma separated)."),
    "overflow": Option("", "str",
                       "Rules '<queue glob> -> <executor> when <metric> <op> <number>[s|m] [and|or ...]' that "
                       "move a task while its executor has a backlog; metrics queued/pending (tries handed "
                       "over, not yet running) and oldest_wait/pending_wait (seconds). Empty: off."),
}

CELERY: dict[str, Option] = {
    "broker_url": Option("filesystem://localhost/{CROSSDOCK_HOME}/celery-broker", "str",
                         "Celery broker URL: redis://host:6379/0, amqp://user:pass@host:5672//, or the "
                         "serverless default (kombu's filesystem transport under CROSSDOCK_HOME)."),
    "result_backend": Option("db+sqlite:///{CROSSDOCK_HOME}/celery-results.db", "str",
                             "Celery result backend: redis://..., db+postgresql://user@host/db, or the "
                             "serverless default (SQLite under CROSSDOCK_HOME)."),
    "result_backend_sqlalchemy_engine_options": Option(
        "{}", "json_object",
        "JSON object of SQLAlchemy create_engine() options for a db+... result backend (Celery's "
        "database_engine_options), e.g. {\"pool_recycle\": 1800}; its keys override crossdock's own."),
    "worker_concurrency": Option(16, "int", "Tasks one worker runs at once (its prefork pool size)."),
    "worker_autoscale": Option("", "str",
                               "'max,min' pool sizes for an autoscaling worker; empty means a fixed pool."),
    "worker_prefetch_multiplier": Option(1, "int",
                                         "Messages a worker reserves per pool process; 1 keeps long tasks "
                                         "from holding messages other workers could run."),
    "task_acks_late": Option(True, "bool",
                             "Acknowledge a message after its task ran, so a killed worker's task is "
                             "redelivered instead of lost."),
    "task_track_started": Option(True, "bool",
                                 "Report running tasks to the scheduler. Workers always record a claim "
                                 "(state STARTED) before running, because the claim is what stops a "
                                 "redelivered message from running a try twice."),
    "operation_timeout": Option(1.0, "float",
                                "Seconds the scheduler waits on the broker or backend for one operation."),
    "sync_parallelism": Option(0, "int",
                               "Kept for Airflow compatibility: states are fetched in one bulk request "
                               "per backend, so no process pool is used. 0 means cpus-1."),
    "task_publish_max_retries": Option(3, "int",
                                       "Heartbeats on which a failed publish is tried again before the "
                                       "task fails."),
    "pool": Option("prefork", "str", "Celery worker pool: prefork (the default), threads, solo."),
    "worker_lost_check_interval": Option(
        60.0, "float",
        "Seconds between pings of the workers running tasks; a task whose worker missed two "
        "pings in a row is given up as lost (and run again, not charged to its retries) instead "
        "of waiting for a redelivery (on Redis that comes only after visibility_timeout). "
        "0 turns the check off."),
    "try_lease_renew_interval": Option(
        1.0, "float",
        "Seconds between a worker's renewals of the claim of each try it runs (the try's lease); "
        "0 turns leases off."),
    "try_lease_timeout": Option(
        15.0, "float",
        "Seconds a running try's lease may go unrenewed before the scheduler takes its worker "
        "as dead and runs the try again, not charged to the task's retries. 0 turns the check off."),
    "broker_loss_check_interval": Option(
        1.0, "float",
        "Seconds between checks that a Redis broker and result backend still hold what was "
        "written to them; one that came back empty has its unclaimed tries published again. "
        "0 turns the check off."),
    "republish_grace": Option(
        3.0, "float",
        "Seconds after a Redis broker or backend came back empty before unclaimed tries are "
        "published again: time for workers to write back the claims of tries they still run."),
    "execute_tasks_new_python_interpreter": Option(
        False, "bool",
        "Run each task in a new Python interpreter instead of a fork of the warm worker process."),
    "worker_enable_remote_control": Option(True, "bool",
                                           "Let workers answer inspect/revoke/shutdown broadcasts."),
    "ssl_active": Option(False, "bool", "Talk to the broker over TLS."),
    "ssl_key": Option("", "str", "Client key file for broker TLS."),
    "ssl_cert": Option("", "str", "Client certificate file for broker TLS."),
    "ssl_cacert": Option("", "str", "CA bundle that signs the broker's certificate."),
    "extra_celery_config": Option("{}", "json_object",
                                  "JSON object of further Celery settings, applied last (serializers "
                                  "stay JSON)."),
    "flower_host": Option("127.0.0.1", "str",
                          "Address Flower listens on. Another address needs flower_basic_auth (or "
                          "flower_allow_unauthenticated = True): Flower can revoke tasks and stop workers."),
    "flower_allow_unauthenticated": Option(False, "bool",
                                           "Let Flower listen on a non-loopback address without basic auth "
                                           "(for a proxy that authenticates in front of it)."),
    "task_signing_key": Option("", "str",
                               "Secret shared by the scheduler and the workers. When set, the executor signs "
                               "every task message (HMAC-SHA256 over task id and command) and a worker "
                               "refuses a message with a missing or wrong signature. Never logged, masked by "
                               "'config list', never put into a pod or a try's environment."),
    "flower_port": Option(5555, "int", "Port Flower listens on."),
    "flower_url_prefix": Option("", "str", "URL prefix when Flower runs behind a proxy."),
    "flower_basic_auth": Option("", "str", "'user:password[,user2:password2]' guarding Flower."),
}

#: Any kombu transport option may be set here; only the ones crossdock gives a default are listed.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Option] = {
    "visibility_timeout": Option(None, "int",
                                 "Seconds before an unacknowledged message is redelivered; unset means "
                                 f"{DEFAULT_VISIBILITY_TIMEOUT} for Redis/SQS brokers and nothing for AMQP."),
}

CELERY_KUBERNETES_EXECUTOR: dict[str, Option] = {
    "kubernetes_queue": Option("kubernetes", "str",
                               "Queue whose tasks run in Kubernetes pods; every other queue goes to Celery."),
}

KUBERNETES_EXECUTOR: dict[str, Option] = {
    "namespace": Option("default", "str", "Namespace worker pods are created in."),
    "pod_template_file": Option("", "str",
                                "YAML file of the pod every worker pod starts from; empty: a built-in "
                                "pod with one container named 'base'."),
    "worker_container_repository": Option("crossdock-worker", "str",
                                          "Image repository of the base container (unless a "
                                          "pod_override sets an image)."),
    "worker_container_tag": Option("latest", "str", "Image tag of the base container."),
    "delete_worker_pods": Option(True, "bool", "Delete a worker pod once its task try has finished "
                                               "(its log is saved to the task log first)."),
    "delete_worker_pods_on_failure": Option(False, "bool",
                                            "Also delete pods whose try failed (needs delete_worker_pods)."),
    "worker_pods_creation_batch_size": Option(16, "int", "Most pods created per scheduler loop."),
    "warm_pool_size": Option(0, "int", "Warm pods kept ready per recently used pod profile; each takes "
                                       "one task, ever (0: off, every task starts a cold pod)."),
    "warm_pool_max": Option(8, "int", "Most warm pods across all profiles (they count within parallelism)."),
    "warm_pod_idle_seconds": Option(300.0, "float", "An unassigned warm pod is deleted after this many seconds."),
    "warm_pod_service_account": Option("crossdock-warm-pod", "str",
                                       "Service account of warm pods (its token mounted): it needs get, list "
                                       "and watch on pods to see its own assignment (deploy/rbac.yaml); empty: "
                                       "the task pod's own, as the pod template or pod_override sets it."),
    "worker_pod_pending_fatal_container_state_reasons": Option(
        "CreateContainerConfigError,ErrImagePull,CreateContainerError,ImageInspectError,InvalidImageName",
        "str", "Comma-separated container waiting reasons that fail a Pending pod's try at once."),
    "multi_namespace_mode": Option(False, "bool",
                                   "Let pod_override choose any namespace and watch pods in all of them."),
    "multi_namespace_mode_namespace_list": Option("", "str",
                                                  "Comma-separated namespaces multi_namespace_mode may use "
                                                  "(watched one by one); empty: all namespaces."),
    "in_cluster": Option(False, "bool", "Use the service account of the pod the scheduler runs in."),
    "config_file": Option("", "str", "Kubeconfig file; empty: $KUBECONFIG or ~/.kube/config."),
    "cluster_context": Option("", "str", "Kubeconfig context; empty: the file's current context."),
    "task_publish_max_retries": Option(3, "int",
                                       "Retries of a pod creation that failed with 409, 5xx, a quota "
                                       "error or a connection error before the try fails."),
    "validate_commands": Option(True, "bool",
                                "Refuse commands other than 'crossdock tasks run ...' (fail the try, "
                                "create no pod)."),
    "share_local_environment": Option(False, "bool",
                                      "Pods run on this machine (the local pod runtime, or a node agent "
                                      "of ours): give each pod this process's PATH (this install first), "
                                      "PYTHONPATH, VIRTUAL_ENV, CROSSDOCK_HOME, CROSSDOCK_CONFIG, "
                                      "CROSSDOCK__* overrides, dags_folder and base_log_folder."),
}

KUBERNETES_LOCAL_RUNTIME: dict[str, Option] = {
    "host": Option("127.0.0.1", "str", "Address the local pods API listens on."),
    "port": Option(0, "int", "Port of the local pods API; 0 picks a free port."),
    "state_dir": Option("{CROSSDOCK_HOME}/pod-runtime", "str",
                        "Folder holding the API's saved pods, the agent's pod folders and logs."),
    "node_name": Option("crossdock-local", "str", "Name of the node the agent registers."),
    "reject_images": Option("*:does-not-exist", "str",
                            "Comma-separated fnmatch patterns of images reported as ErrImagePull."),
    "history_limit": Option(10000, "int",
                            "Watch events kept before older resource versions answer 410 Gone."),
    "kubelet_client_ca_file": Option("", "str",
                                     "CA file: the node agent's endpoint also accepts client certificates it "
                                     "signed (set a real API server's --kubelet-client-certificate from it)."),
    "kubelet_anonymous_log_reads": Option(False, "bool",
                                          "Serve container logs from the node agent's endpoint without "
                                          "credentials, for an API server that presents none to nodes; "
                                          "stats and fault hooks stay authenticated."),
}

SECRETS: dict[str, Option] = {
    "variables_file": Option("{CROSSDOCK_HOME}/variables.json", "str",
                             "JSON (or .yaml) file of Variables, read by tries after CROSSDOCK_VAR_<KEY> "
                             "variables and written by Variable.set and 'crossdock variables'; on "
                             "Kubernetes, mount a Secret at this path. Empty: no file."),
    "connections_file": Option("{CROSSDOCK_HOME}/connections.json", "str",
                               "JSON (or .yaml) file of Connections (URIs or Airflow's JSON form), read "
                               "after CROSSDOCK_CONN_<ID> variables and written by 'crossdock "
                               "connections'; on Kubernetes, mount a Secret at this path. Empty: no file."),
}

WORKER_QUEUES: dict[str, Option] = {
    "queues": Option("{}", "json_object",
                     "JSON object: Celery queue name -> {\"min_workers\": N, \"max_workers\": N, "
                     "\"max_tasks_per_worker\": N, \"resources\": {...}}; a queue a DAG uses but this "
                     "does not list gets the defaults below."),
    "default_min_workers": Option(1, "int", "Fewest workers of a queue the config does not list (0 allowed)."),
    "default_max_workers": Option(10, "int", "Most workers of a queue the config does not list."),
    "default_max_tasks_per_worker": Option(0, "int",
                                           "Tasks one worker of an unlisted queue runs at once; 0 means "
                                           "[celery] worker_concurrency."),
    "interval": Option(10.0, "float", "Seconds between the autoscaler's decisions (and queue-monitor reads)."),
    "cooldown": Option(60.0, "float",
                       "Seconds after a change of a queue's workers before it is scaled down again "
                       "(scaling up never waits), so a queue does not flap."),
    "autoscale": Option(False, "bool",
                        "Scale each queue's workers by ceil((queued + running) / max_tasks_per_worker) "
                        "between min and max. 'crossdock standalone' turns it on for its local workers."),
    "drain_grace": Option(600.0, "float",
                          "Seconds a worker chosen for scale-down may take to finish what it runs; after "
                          "it, its tasks are left running and the worker is reported, never killed."),
    "deployment_name": Option("crossdock-worker-{queue}", "str",
                              "Kubernetes Deployment of each queue's workers ('crossdock celery autoscaler', "
                              "'crossdock deploy'); {queue} is the queue name made DNS-safe."),
    "namespace": Option("", "str", "Namespace of those Deployments; empty: [kubernetes_executor] namespace."),
}

METRICS: dict[str, Option] = {
    "enabled": Option(False, "bool",
                      "Serve Prometheus metrics from the scheduler ('crossdock standalone' turns it on)."),
    "host": Option("127.0.0.1", "str", "Address the metrics endpoint listens on."),
    "port": Option(9464, "int", "Port of the metrics endpoint (/metrics)."),
}

WEBSERVER: dict[str, Option] = {
    "host": Option("127.0.0.1", "str",
                   "Address the web server (REST API and UI) listens on; any address but a loopback one "
                   "needs auth_users, or the server refuses to start."),
    "port": Option(8080, "int", "Port of the web server; 0 picks a free port."),
    "auth_users": Option("{}", "json_object",
                         "JSON object: user name -> {\"password_hash\": \"scrypt$...\", \"role\": \"admin\" or "
                         "\"viewer\"}, hashes from 'crossdock webserver --hash-password'. Set: every API call "
                         "names a user (HTTP Basic, or the token the UI's sign-in returns) and viewers may only "
                         "read. Empty: no sign-in, allowed on a loopback address only."),
    "session_lifetime": Option(43200.0, "float", "Seconds a sign-in's token stays valid."),
}

#: Every declared section, in the order ``crossdock config list --defaults`` shows them.
SCHEMA: dict[str, dict[str, Option]] = {
    "core": CORE,
    "database": DATABASE,
    "scheduler": SCHEDULER,
    "logging": LOGGING,
    "local_executor": LOCAL_EXECUTOR,
    "executor_routing": EXECUTOR_ROUTING,
    "celery": CELERY,
    "celery_broker_transport_options": CELERY_BROKER_TRANSPORT_OPTIONS,
    "celery_kubernetes_executor": CELERY_KUBERNETES_EXECUTOR,
    "kubernetes_executor": KUBERNETES_EXECUTOR,
    "kubernetes_local_runtime": KUBERNETES_LOCAL_RUNTIME,
    "secrets": SECRETS,
    "worker_queues": WORKER_QUEUES,
    "metrics": METRICS,
    "webserver": WEBSERVER,
}

#: Sections whose keys are passed through to a library as they are: any key is valid.
OPEN_SECTIONS = frozenset({"celery_broker_transport_options"})

#: Sections every start-up check reads, whichever executors are configured.
COMMON_SECTIONS = ("core", "database", "scheduler", "logging", "executor_routing", "metrics")

#: Sections each built-in executor reads, by class name; checked when it is configured.
EXECUTOR_SECTIONS: dict[str, tuple[str, ...]] = {
    "LocalExecutor": ("local_executor",),
    "CeleryExecutor": ("celery", "celery_broker_transport_options"),
    "KubernetesExecutor": ("kubernetes_executor",),
    "CeleryKubernetesExecutor": ("celery", "celery_broker_transport_options", "kubernetes_executor",
                                 "celery_kubernetes_executor"),
}


def sections_for_executors(executor: str) -> list[str]:
    """The declared sections a ``[core] executor`` value needs, read from the names alone.

    Each entry (``Name``, ``dotted.path.Name`` or ``alias:dotted.path.Name``) is known by
    its class name; an executor of another package adds no section here (its own
    ``register_defaults`` sections are checked regardless).
    """
    sections = list(COMMON_SECTIONS)
    for entry in executor.split(","):
        class_name = entry.strip().rpartition(":")[2].rpartition(".")[2]
        for section in EXECUTOR_SECTIONS.get(class_name, ()):
            if section not in sections:
                sections.append(section)
    return sections
