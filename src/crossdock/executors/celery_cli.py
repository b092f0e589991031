"""The ``crossdock celery`` group the CeleryExecutor vends (Airflow's ``get_cli_commands``).

Only the description: the handlers are named by dotted path and live in the CLI
package (:mod:`crossdock.cli.celery_command`), which the executors do not import.
"""

from __future__ import annotations

from crossdock.cli_definition import ActionCommand, Arg, GroupCommand

#: Pid file a worker writes (and ``celery stop`` reads) when ``--pid`` is not given.
DEFAULT_PID_FILE_NAME = "crossdock-worker.pid"

_HANDLERS = "crossdock.cli.celery_command"

_PID = Arg(("--pid",), {"metavar": "FILE", "help": f"pid file (default: $CROSSDOCK_HOME/{DEFAULT_PID_FILE_NAME})"})
_HOSTNAME = Arg(("-H", "--celery-hostname"), {"dest": "celery_hostname", "metavar": "NAME",
                                               "help": "worker node name, e.g. worker1@%%h"})
_REQUIRED_HOSTNAME = Arg(("-H", "--celery-hostname"), {"dest": "celery_hostname", "metavar": "NAME",
                                                        "required": True, "help": "worker node name"})
_REQUIRED_QUEUES = Arg(("-q", "--queues"), {"metavar": "A,B", "required": True,
                                             "help": "comma-separated queue names"})

WORKER_ARGS = [
    Arg(("-q", "--queues"), {"metavar": "A,B",
                             "help": "comma-separated queues to consume (default: [core] default_queue)"}),
    Arg(("-c", "--concurrency"), {"type": int, "help": "pool size (default: [celery] worker_concurrency)"}),
    Arg(("-a", "--autoscale"), {"metavar": "MAX,MIN",
                                "help": "autoscale the pool between MIN and MAX processes"}),
    _HOSTNAME,
    _PID,
    Arg(("-D", "--daemon"), {"action": "store_true", "help": "detach and run in the background"}),
    Arg(("--without-mingle",), {"action": "store_true", "help": "do not synchronise with other workers at start"}),
    Arg(("--without-gossip",), {"action": "store_true", "help": "do not subscribe to other workers' events"}),
    Arg(("-s", "--skip-serve-logs"), {"action": "store_true",
                                      "help": "do not serve task logs over HTTP (logs stay in the log folder)"}),
    Arg(("-l", "--loglevel"), {"default": "INFO", "help": "worker log level (default: INFO)"}),
    Arg(("--logfile",), {"help": "write the worker's log here instead of stderr"}),
    Arg(("--ready-file",), {"help": "touch this file once the worker consumes its queues"}),
    Arg(("--quiet",), {"action": "store_true",
                       "help": "no start-up banner and no superuser warning (the workers crossdock "
                               "standalone and demo start for you)"}),
]

FLOWER_ARGS = [
    Arg(("--hostname",), {"dest": "flower_host", "help": "address to listen on (default: [celery] flower_host)"}),
    Arg(("-p", "--port"), {"dest": "flower_port", "type": int,
                           "help": "port to listen on (default: [celery] flower_port)"}),
    Arg(("-u", "--url-prefix"), {"dest": "url_prefix", "help": "URL prefix behind a proxy"}),
    Arg(("-A", "--basic-auth"), {"dest": "basic_auth", "metavar": "USER:PASSWORD[,...]",
                                 "help": "guard Flower with HTTP basic auth"}),
    Arg(("--pid",), {"metavar": "FILE", "help": "pid file"}),
    Arg(("-D", "--daemon"), {"action": "store_true", "help": "detach and run in the background"}),
]

CELERY_COMMANDS = GroupCommand("celery", "Run and control Celery workers (CeleryExecutor)", [
    ActionCommand("worker", "Start a Celery worker that runs crossdock task commands",
                  f"{_HANDLERS}.worker", WORKER_ARGS),
    ActionCommand("flower", "Start Flower, the Celery monitoring web UI", f"{_HANDLERS}.flower", FLOWER_ARGS),
    ActionCommand("stop", "Stop the worker whose pid file is given (SIGTERM, warm shutdown)",
                  f"{_HANDLERS}.stop_worker", [_PID]),
    ActionCommand("list-workers", "List the workers that answer a ping, with their queues",
                  f"{_HANDLERS}.list_workers"),
    ActionCommand("shutdown-worker", "Ask one worker to shut down (warm)", f"{_HANDLERS}.shutdown_worker",
                  [_REQUIRED_HOSTNAME]),
    ActionCommand("shutdown-all-workers", "Ask every worker to shut down (warm)",
                  f"{_HANDLERS}.shutdown_all_workers",
                  [Arg(("-y", "--yes"), {"action": "store_true", "help": "do not ask for confirmation"})]),
    ActionCommand("add-queue", "Make a running worker consume more queues", f"{_HANDLERS}.add_queue",
                  [_REQUIRED_QUEUES, _REQUIRED_HOSTNAME]),
    ActionCommand("remove-queue", "Make a running worker stop consuming queues", f"{_HANDLERS}.remove_queue",
                  [_REQUIRED_QUEUES, _REQUIRED_HOSTNAME]),
    ActionCommand("autoscaler", "Scale each queue's worker Deployment on Kubernetes by its load, drain-first",
                  "crossdock.cli.autoscaler_command.autoscaler", [
                      Arg(("--once",), {"action": "store_true",
                                        "help": "decide once, print the decisions and exit (cool-down 0 "
                                                "unless --cooldown)"}),
                      Arg(("--interval",), {"type": float,
                                            "help": "seconds between decisions (default: [worker_queues] interval)"}),
                      Arg(("--cooldown",), {"type": float,
                                            "help": "seconds before a queue shrinks after a change "
                                                    "(default: [worker_queues] cooldown)"}),
                      Arg(("-o", "--output"), {"choices": ("table", "json"), "default": "table",
                                               "help": "how --once prints (default: table)"})]),
])
