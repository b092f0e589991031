"""``crossdock celery ...``: run and control Celery workers, and Flower.

Importing this module must stay cheap (``crossdock --help`` reads it), so Celery itself
is imported only inside the command functions.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from crossdock.cli.errors import CliError
from crossdock.executors.celery_cli import CELERY_COMMANDS, DEFAULT_PID_FILE_NAME
from crossdock.processes import pid_alive

#: Seconds ``celery stop`` waits for a worker to exit after SIGTERM.
STOP_WAIT_SECONDS = 30.0
#: Seconds control commands (list-workers, shutdown, add-queue) wait for replies.
CONTROL_REPLY_TIMEOUT = 1.0

#: Read by ``crossdock.cli.main``.
COMMANDS = [CELERY_COMMANDS]


def _default_pid_file() -> str:
    from crossdock.configuration import crossdock_home

    return str(crossdock_home() / DEFAULT_PID_FILE_NAME)


def _celery_conf():
    """``conf`` with the ``[celery]`` keys declared (they are declared where the app is built)."""
    import crossdock.executors.celery_app  # noqa: F401 - registers [celery] defaults
    from crossdock.configuration import conf

    return conf


def _queues(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _app():
    from crossdock.executors.celery_app import get_celery_app

    return get_celery_app()


# -- worker -------------------------------------------------------------------------------


def worker_argv(args: Any) -> list[str]:
    """The ``celery worker`` arguments for crossdock's worker options."""
    conf = _celery_conf()

    queues = _queues(args.queues) or [conf.getstr("core", "default_queue")]
    concurrency = args.concurrency if args.concurrency is not None else conf.getint("celery", "worker_concurrency")
    if concurrency < 1:
        raise CliError(f"--concurrency must be at least 1, got {concurrency}")
    argv = ["worker", "-Q", ",".join(queues), "-P", conf.getstr("celery", "pool"),
            "-l", args.loglevel, "--pidfile", args.pid or _default_pid_file()]
    autoscale = args.autoscale or conf.getstr("celery", "worker_autoscale")
    if autoscale:
        parts = autoscale.split(",")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise CliError(f"--autoscale must be MAX,MIN (two whole numbers), got {autoscale!r}")
        argv += ["--autoscale", autoscale]
    else:
        argv += ["-c", str(concurrency)]
    if args.celery_hostname:
        argv += ["-n", args.celery_hostname]
    if args.without_mingle:
        argv.append("--without-mingle")
    if args.without_gossip:
        argv.append("--without-gossip")
    if args.logfile:
        argv += ["--logfile", args.logfile]
    if args.daemon:
        argv.append("--detach")
    if getattr(args, "quiet", False):
        argv.insert(0, "--quiet")  # an option of the celery command, before its sub-command
    return argv


def worker(args: Any) -> int:
    from celery.signals import worker_process_init, worker_ready

    from crossdock.executors.celery_worker import start_task_zygote, warm_up

    argv = worker_argv(args)
    if getattr(args, "quiet", False):
        import warnings

        # A worker started for the user by standalone or demo runs as the user who typed
        # the command; Celery's advice to switch users is for a service account.
        warnings.filterwarnings("ignore", message=".*running the worker with superuser privileges")
    app = _app()
    warm_up()
    ready_file = getattr(args, "ready_file", None)
    if ready_file:
        Path(ready_file).unlink(missing_ok=True)

        def _touch_ready(**_: Any) -> None:
            Path(ready_file).write_text(str(os.getpid()), encoding="utf-8")

        worker_ready.connect(_touch_ready, weak=False)
    worker_process_init.connect(lambda **_: start_task_zygote(), weak=False)
    app.worker_main(argv)
    return 0


# -- flower -------------------------------------------------------------------------------


def flower_argv(args: Any) -> list[str]:
    conf = _celery_conf()

    host = args.flower_host or conf.getstr("celery", "flower_host")
    port = args.flower_port or conf.getint("celery", "flower_port")
    argv = ["flower", f"--address={host}", f"--port={port}"]
    url_prefix = args.url_prefix if args.url_prefix is not None else conf.getstr("celery", "flower_url_prefix")
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix}")
    basic_auth = args.basic_auth if args.basic_auth is not None else conf.getstr("celery", "flower_basic_auth")
    if basic_auth:
        argv.append(f"--basic_auth={basic_auth}")
    elif not _is_loopback(host) and not conf.getboolean("celery", "flower_allow_unauthenticated"):
        # Flower can revoke and terminate tasks and shut workers down: reachable from
        # elsewhere, it must ask who is there (design principle 8).
        raise CliError(f"refusing to start Flower on {host} without authentication: set [celery] "
                       f"flower_basic_auth (or --basic-auth USER:PASSWORD), listen on 127.0.0.1, or set "
                       f"[celery] flower_allow_unauthenticated = True if a proxy in front authenticates")
    return argv


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def flower(args: Any) -> int:
    argv = flower_argv(args)
    if args.daemon or args.pid:
        _detach_or_write_pid(args)
    _app().start(argv)
    return 0


def _detach_or_write_pid(args: Any) -> None:
    pid_file = Path(args.pid or _default_pid_file().replace("worker", "flower"))
    if args.daemon:
        if os.fork():
            os._exit(0)
        os.setsid()
    pid_file.write_text(str(os.getpid()), encoding="utf-8")


# -- stop -----------------------------------------------------------------------------------


def stop_worker(args: Any) -> int:
    """SIGTERM the worker named by the pid file, wait for it to go, remove the pid file."""
    pid_file = Path(args.pid or _default_pid_file())
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise CliError(f"no pid file at {pid_file}: is a worker running with this CROSSDOCK_HOME "
                       f"(or pass --pid)?") from None
    except ValueError:
        raise CliError(f"pid file {pid_file} does not hold a process id") from None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        print(f"worker {pid} was not running; removed stale pid file {pid_file}")
        return 0
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise CliError(f"worker {pid} still running {STOP_WAIT_SECONDS:.0f}s after SIGTERM")
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    print(f"stopped worker {pid}")
    return 0


# -- remote control -----------------------------------------------------------------------


def list_workers(args: Any) -> int:
    inspect = _app().control.inspect(timeout=CONTROL_REPLY_TIMEOUT)
    queues = inspect.active_queues() or {}
    if not queues:
        print("no workers answered")
        return 1
    for name in sorted(queues):
        print(f"{name}\t{','.join(sorted(q['name'] for q in queues[name] or ()))}")
    return 0


def shutdown_worker(args: Any) -> int:
    control = _app().control
    # Celery's shutdown command sends no reply, so ask first whether the worker is there.
    if not control.ping(destination=[args.celery_hostname], timeout=CONTROL_REPLY_TIMEOUT):
        raise CliError(f"worker {args.celery_hostname} did not answer")
    control.shutdown(destination=[args.celery_hostname])
    print(f"asked {args.celery_hostname} to shut down")
    return 0


def shutdown_all_workers(args: Any) -> int:
    if not args.yes:
        answer = input("Shut down every Celery worker? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done")
            return 1
    _app().control.broadcast("shutdown")
    print("asked every worker to shut down")
    return 0


def _change_queues(args: Any, *, add: bool) -> int:
    control = _app().control
    failed = []
    for queue in _queues(args.queues):
        call = control.add_consumer if add else control.cancel_consumer
        replies = call(queue, destination=[args.celery_hostname], reply=True, timeout=CONTROL_REPLY_TIMEOUT)
        if not replies:
            failed.append(queue)
        else:
            for reply in replies:
                for name, answer in reply.items():
                    print(f"{name}: {answer.get('ok') or answer.get('error')}")
    if failed:
        raise CliError(f"worker {args.celery_hostname} did not answer for queue(s) {', '.join(failed)}")
    return 0


def add_queue(args: Any) -> int:
    return _change_queues(args, add=True)


def remove_queue(args: Any) -> int:
    return _change_queues(args, add=False)
