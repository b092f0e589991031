"""The core command tree; executor modules add their own groups (celery, kubernetes)."""

from __future__ import annotations

from crossdock.cli.definition import ActionCommand, Arg, GroupCommand, lazy_load_command as lazy
from crossdock.cli.output import OUTPUT_FORMATS

OUTPUT = Arg(("-o", "--output"), {"choices": OUTPUT_FORMATS, "default": "table",
                                  "help": "output format (default: table)"})
DAG_ID = Arg(("dag_id",), {"help": "the DAG id"})
TASK_ID = Arg(("task_id",), {"help": "the task id"})
RUN_ID = Arg(("run_id",), {"help": "the DAG run id"})
RUNS_AROUND = [Arg(("--include-past",), {"action": "store_true",
                                          "help": "with --run-id: also the runs before it (by logical date)"}),
               Arg(("--include-future",), {"action": "store_true",
                                            "help": "with --run-id: also the runs after it (by logical date)"})]
MAP_INDEXES = Arg(("--map-index",), {"type": int, "action": "append", "dest": "map_indexes", "metavar": "N",
                                     "help": "only this element of a mapped task (repeat for more)"})
MARK_RELATIVES = [Arg(("--downstream",), {"action": "store_true", "help": "also mark every task downstream"}),
                  Arg(("--upstream",), {"action": "store_true", "help": "also mark every task upstream"}),
                  Arg(("--include-past",), {"action": "store_true", "help": "also in the runs before this one"}),
                  Arg(("--include-future",), {"action": "store_true", "help": "also in the runs after this one"}),
                  MAP_INDEXES]
SUBDIR = Arg(("-S", "--subdir"), {"help": "DAG file or folder (default: [core] dags_folder)"})
YES = Arg(("-y", "--yes"), {"action": "store_true", "help": "do not ask for confirmation"})

DB = GroupCommand("db", "Create, upgrade or empty the metadata database", [
    ActionCommand("migrate", "Create or upgrade the metadata tables", lazy("crossdock.cli.db_command.migrate")),
    ActionCommand("reset", "Drop every table and create them again (all history is lost)",
                  lazy("crossdock.cli.db_command.reset"),
                  [YES]),
    ActionCommand("check", "Check that the metadata database can be reached",
                  lazy("crossdock.cli.db_command.check")),
])

DAGS = GroupCommand("dags", "List, trigger, pause, backfill and delete DAGs; inspect runs and import errors", [
    ActionCommand("list", "Parse the DAG folder and list its DAGs", lazy("crossdock.cli.dags_command.list_dags"),
                  [OUTPUT]),
    ActionCommand("trigger", "Queue a manual run of a DAG", lazy("crossdock.cli.dags_command.trigger"), [
        DAG_ID,
        Arg(("-r", "--run-id"), {"help": "run id (default: manual__<time>)"}),
        Arg(("-c", "--conf"), {"help": "JSON object passed to the run as its conf"}),
        Arg(("--logical-date",), {"help": "logical date of the run, ISO-8601 (default: now)"}),
        Arg(("-w", "--wait"), {"action": "store_true",
                               "help": "wait until the run finishes; exit 0 only if it succeeded"}),
        Arg(("--timeout",), {"type": float, "default": None, "help": "seconds to wait with --wait"}),
    ]),
    ActionCommand("list-runs", "List DAG runs", lazy("crossdock.cli.dags_command.list_runs"), [
        Arg(("-d", "--dag-id"), {"help": "only this DAG"}),
        Arg(("--state",), {"help": "only runs in this state"}),
        OUTPUT]),
    ActionCommand("list-import-errors", "List DAG files that failed to import",
                  lazy("crossdock.cli.dags_command.list_import_errors"), [OUTPUT]),
    ActionCommand("state", "Print the state of a DAG run", lazy("crossdock.cli.dags_command.state"),
                  [DAG_ID, RUN_ID]),
    ActionCommand("pause", "Pause a DAG: no scheduled runs, manual runs wait in queued",
                  lazy("crossdock.cli.dags_command.pause"), [DAG_ID]),
    ActionCommand("unpause", "Unpause a DAG: schedule it, start its queued runs",
                  lazy("crossdock.cli.dags_command.unpause"), [DAG_ID]),
    ActionCommand("backfill", "Run a DAG for every schedule interval from -s to -e (within max_active_runs) "
                              "and wait, showing progress; exit 0 only if every run succeeded",
                  lazy("crossdock.cli.dags_command.backfill"), [
                      DAG_ID,
                      Arg(("-s", "--start-date"), {"required": True, "help": "first logical date, ISO 8601"}),
                      Arg(("-e", "--end-date"), {"required": True, "help": "last logical date, ISO 8601"}),
                      Arg(("--reset-dagruns",), {"action": "store_true",
                                                 "help": "clear the existing runs in the range so they run again"}),
                      YES]),
    ActionCommand("delete-run", "Delete one DAG run with its task instances (not while a scheduler runs it)",
                  lazy("crossdock.cli.dags_command.delete_run"), [DAG_ID, RUN_ID]),
    ActionCommand("delete", "Delete a DAG's runs, task instances and stored parse (its file is kept)",
                  lazy("crossdock.cli.dags_command.delete"), [DAG_ID, YES]),
    ActionCommand("reserialize", "Parse the DAG folder now and store the result",
                  lazy("crossdock.cli.dags_command.reserialize")),
    ActionCommand("test", "Run one whole DAG run in the foreground: no scheduler, workers or database; "
                          "exit 0 only if it succeeded",
                  lazy("crossdock.cli.dags_test_command.test"), [
                      DAG_ID,
                      Arg(("logical_date",), {"nargs": "?", "metavar": "LOGICAL_DATE",
                                              "help": "logical date of the run, ISO 8601 (default: now)"}),
                      SUBDIR,
                      Arg(("-c", "--conf"), {"help": "JSON object passed to the run as its conf "
                                                     "(checked against the DAG's params)"}),
                  ]),
])

TASKS = GroupCommand("tasks", "Run, test and inspect task instances", [
    ActionCommand("run", "Run one try of a task instance (what workers and pods execute)",
                  lazy("crossdock.cli.tasks_command.run"),
                  [Arg(("task_args",), {"nargs": "*", "help": "DAG_ID TASK_ID RUN_ID --try-number N "
                                                              "[--map-index I] [--subdir PATH]"})]),
    ActionCommand("test", "Run a task in the foreground without the scheduler or the database",
                  lazy("crossdock.cli.tasks_command.test"),
                  [DAG_ID, TASK_ID, SUBDIR,
                   Arg(("--logical-date",), {"help": "logical date, ISO 8601 (default: now)"})]),
    ActionCommand("render", "Print a task's template fields rendered for one logical date",
                  lazy("crossdock.cli.tasks_command.render"),
                  [DAG_ID, TASK_ID, SUBDIR,
                   Arg(("--logical-date",), {"help": "logical date, ISO 8601 (default: now)"})]),
    ActionCommand("list", "List the tasks of a DAG", lazy("crossdock.cli.tasks_command.list_tasks"),
                  [DAG_ID, OUTPUT]),
    ActionCommand("states-for-dag-run", "Task instance states of one DAG run",
                  lazy("crossdock.cli.tasks_command.states_for_dag_run"), [DAG_ID, RUN_ID, OUTPUT]),
    ActionCommand("xcom", "Print the XCom values a task instance pushed", lazy("crossdock.cli.tasks_command.xcom"),
                  [DAG_ID, TASK_ID, RUN_ID,
                   Arg(("-k", "--key"), {"help": "only this key (default: every key)"}),
                   Arg(("--map-index",), {"type": int, "default": -1}), OUTPUT]),
    ActionCommand("logs", "Print the log of one try of a task instance", lazy("crossdock.cli.tasks_command.logs"),
                  [DAG_ID, TASK_ID, RUN_ID,
                   Arg(("-t", "--try-number"), {"type": int, "help": "try (default: the latest)"}),
                   Arg(("--map-index",), {"type": int, "default": -1})]),
    ActionCommand("clear", "Clear task instances so they run again (try numbers kept; finished runs run again)",
                  lazy("crossdock.cli.tasks_command.clear"), [
                      DAG_ID,
                      Arg(("-t", "--task-regex"), {"help": "only tasks whose id matches this regex"}),
                      Arg(("-s", "--start-date"), {"help": "only runs with a logical date on or after this"}),
                      Arg(("-e", "--end-date"), {"help": "only runs with a logical date on or before this"}),
                      Arg(("--run-id",), {"help": "only this run"}),
                      Arg(("-d", "--downstream"), {"action": "store_true", "help": "also the tasks downstream"}),
                      Arg(("-u", "--upstream"), {"action": "store_true", "help": "also the tasks upstream"}),
                      Arg(("-f", "--only-failed"), {"action": "store_true",
                                                    "help": "only failed and upstream_failed task instances"}),
                      Arg(("-r", "--only-running"), {"action": "store_true", "help": "only running task instances"}),
                      *RUNS_AROUND, MAP_INDEXES, YES]),
    ActionCommand("mark-success", "Mark a task instance success (its try is stopped; failed tasks "
                                  "downstream run again)", lazy("crossdock.cli.tasks_command.mark_success"),
                  [DAG_ID, TASK_ID, RUN_ID, *MARK_RELATIVES]),
    ActionCommand("mark-failed", "Mark a task instance failed (its try is stopped)",
                  lazy("crossdock.cli.tasks_command.mark_failed"), [DAG_ID, TASK_ID, RUN_ID, *MARK_RELATIVES]),
])

POOL_NAME = Arg(("name",), {"help": "the pool's name"})
POOLS = GroupCommand("pools", "Slot budgets that cap how many task instances run at once", [
    ActionCommand("list", "List pools with their slots in use", lazy("crossdock.cli.pools_command.list_pools"),
                  [OUTPUT]),
    ActionCommand("get", "Show one pool", lazy("crossdock.cli.pools_command.get"), [POOL_NAME, OUTPUT]),
    ActionCommand("set", "Create a pool or change its slots and description",
                  lazy("crossdock.cli.pools_command.set_pool"),
                  [POOL_NAME, Arg(("slots",), {"type": int, "help": "how many slots"}),
                   Arg(("description",), {"nargs": "?", "default": "", "help": "what the pool is for"}), OUTPUT]),
    ActionCommand("delete", "Delete a pool (not default_pool)", lazy("crossdock.cli.pools_command.delete"),
                  [POOL_NAME]),
    ActionCommand("import", "Set every pool of a JSON file ({name: {slots, description}}); all or none",
                  lazy("crossdock.cli.pools_command.import_pools"), [Arg(("file",)), OUTPUT]),
    ActionCommand("export", "Write every pool to a JSON file", lazy("crossdock.cli.pools_command.export_pools"),
                  [Arg(("file",))]),
])

CONFIG = GroupCommand("config", "Read the configuration", [
    ActionCommand("get", "Print one configuration value", lazy("crossdock.cli.config_command.get"),
                  [Arg(("section",)), Arg(("key",))]),
    ActionCommand("list", "Print every configuration value", lazy("crossdock.cli.config_command.list_config"),
                  [Arg(("--defaults",), {"action": "store_true",
                                         "help": "print a commented default config file instead"})]),
])

VARIABLE_KEY = Arg(("key",), {"help": "the Variable's key"})
CONN_ID = Arg(("conn_id",), {"help": "the connection id"})
SHOW_SECRETS = Arg(("--show-secrets",), {"action": "store_true",
                                         "help": "print passwords and secret values instead of ***"})

VARIABLES = GroupCommand("variables", "Read and write Variables (environment, then [secrets] variables_file)", [
    ActionCommand("get", "Print a Variable's value", lazy("crossdock.cli.variables_command.get"), [
        VARIABLE_KEY,
        Arg(("-d", "--default"), {"help": "print this when the Variable does not exist (instead of failing)"}),
        Arg(("-j", "--json"), {"action": "store_true", "help": "parse the value as JSON and print it indented"})]),
    ActionCommand("set", "Set a Variable in the variables file", lazy("crossdock.cli.variables_command.set_variable"), [
        VARIABLE_KEY, Arg(("value",), {"help": "the value"}),
        Arg(("-j", "--json"), {"action": "store_true", "help": "the value is JSON: check it and store it as JSON"})]),
    ActionCommand("list", "List Variables with where each comes from (secret values masked)",
                  lazy("crossdock.cli.variables_command.list_variables"), [OUTPUT, SHOW_SECRETS]),
    ActionCommand("delete", "Delete a Variable from the variables file",
                  lazy("crossdock.cli.variables_command.delete"), [VARIABLE_KEY]),
    ActionCommand("import", "Set every Variable of a JSON (or .yaml) file in the variables file",
                  lazy("crossdock.cli.variables_command.import_variables"), [Arg(("file",))]),
    ActionCommand("export", "Write the variables file's Variables to a JSON file (mode 0600)",
                  lazy("crossdock.cli.variables_command.export_variables"), [Arg(("file",))]),
])

CONNECTIONS = GroupCommand("connections", "Read and write Connections "
                           "(environment, then [secrets] connections_file)", [
    ActionCommand("get", "Print a connection (password masked)", lazy("crossdock.cli.connections_command.get"),
                  [CONN_ID, OUTPUT, SHOW_SECRETS]),
    ActionCommand("add", "Add a connection to the connections file", lazy("crossdock.cli.connections_command.add"), [
        CONN_ID,
        Arg(("--conn-uri",), {"help": "the whole connection as a URI: type://login:password@host:port/schema?extra"}),
        Arg(("--conn-json",), {"help": "the whole connection as Airflow's JSON form"}),
        Arg(("--conn-type",), {"help": "connection type (postgres, http, ...)"}),
        Arg(("--conn-host",)), Arg(("--conn-login",)), Arg(("--conn-password",)),
        Arg(("--conn-port",)), Arg(("--conn-schema",)),
        Arg(("--conn-extra",), {"help": "extra, a JSON object"}),
        Arg(("--conn-description",))]),
    ActionCommand("list", "List connections with where each comes from (no passwords)",
                  lazy("crossdock.cli.connections_command.list_connections"), [OUTPUT]),
    ActionCommand("delete", "Delete a connection from the connections file",
                  lazy("crossdock.cli.connections_command.delete"), [CONN_ID]),
])

JOBS = GroupCommand("jobs", "Scheduler jobs: which is active, which are hot standbys", [
    ActionCommand("list", "List scheduler jobs with their role (active / standby)",
                  lazy("crossdock.cli.jobs_command.list_jobs"),
                  [Arg(("--running",), {"action": "store_true", "help": "only jobs not yet ended"}), OUTPUT]),
    ActionCommand("check", "Exit 0 only if an alive scheduler job exists (a liveness probe)",
                  lazy("crossdock.cli.jobs_command.check"),
                  [Arg(("--hostname",), {"help": "only jobs on this host"}),
                   Arg(("--active",), {"action": "store_true", "help": "only the job holding the lease"})]),
])

SCHEDULER = ActionCommand("scheduler", "Run the scheduler (the executor runs inside it)",
                          lazy("crossdock.cli.scheduler_command.scheduler"), [
                              Arg(("-n", "--num-runs"), {"type": int, "default": None,
                                                         "help": "stop after this many loop steps"}),
                          ])

STANDALONE = ActionCommand("standalone", "Scheduler plus the configured workers in one command",
                           lazy("crossdock.cli.standalone_command.standalone"))

WEBSERVER = ActionCommand("webserver", "Serve the REST API (/api/v1) and the web UI", lazy(
    "crossdock.cli.webserver_command.webserver"), [
        Arg(("-H", "--host"), {"help": "address to listen on (default: [webserver] host, 127.0.0.1); any other "
                                       "than a loopback address needs [webserver] auth_users"}),
        Arg(("-p", "--port"), {"type": int, "help": "port to listen on (default: [webserver] port, 8080; 0: any free)"}),
        Arg(("--log-level",), {"default": "warning", "choices": ["debug", "info", "warning", "error"],
                               "help": "level of the HTTP server's own messages (default: warning)"}),
        Arg(("--hash-password",), {"action": "store_true",
                                   "help": "print the password_hash of a password for [webserver] auth_users "
                                           "(read from the terminal, or the first line of standard input)"}),
    ])

DEMO = ActionCommand("demo", "Run the example DAGs end to end and print a summary",
                     lazy("crossdock.cli.demo_command.demo"), [
                         Arg(("--home",), {"help": "folder for the demo's database and logs "
                                                   "(default: $CROSSDOCK_HOME/demo)"}),
                         Arg(("--executor",), {"help": "executor to run the demo on (default: CeleryKubernetesExecutor)"}),
                         Arg(("--dag",), {"action": "append", "help": "only this example DAG (repeatable)"}),
                     ])

QUEUES = ActionCommand("queues", "Per queue: executor, tasks waiting and running, broker messages, workers "
                                  "and free slots, oldest wait, desired workers and why",
                        lazy("crossdock.cli.queues_command.queues"), [
                            Arg(("-w", "--watch"), {"action": "store_true",
                                                    "help": "print again every --interval seconds until Ctrl-C"}),
                            Arg(("--interval",), {"type": float, "default": 2.0,
                                                  "help": "seconds between prints with --watch (default: 2)"}),
                            OUTPUT])
VERSION = ActionCommand("version", "Print crossdock's version", lazy("crossdock.cli.version_command.version"))

COMMANDS = [DB, DAGS, TASKS, POOLS, CONFIG, VARIABLES, CONNECTIONS, JOBS, QUEUES, SCHEDULER, STANDALONE, WEBSERVER, DEMO, VERSION]
