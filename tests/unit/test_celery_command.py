"""``crossdock celery ...``: how options become a Celery worker / Flower, and ``celery stop``."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from crossdock.cli.celery_command import flower_argv, stop_worker, worker_argv
from crossdock.cli.errors import CliError
from crossdock.cli.main import build_parser
from crossdock.configuration import conf


def parse(*argv):
    return build_parser().parse_args(["celery", *argv])


def test_worker_options_map_to_celery_worker_arguments(crossdock_home):
    args = parse("worker", "-q", "a,b", "-c", "3", "-H", "w1@%h", "--pid", "/run/w.pid",
                 "--without-mingle", "--without-gossip", "-s", "-l", "DEBUG", "-D")
    argv = worker_argv(args)
    assert argv[0] == "worker"
    assert argv[argv.index("-Q") + 1] == "a,b"
    assert argv[argv.index("-c") + 1] == "3"
    assert argv[argv.index("-n") + 1] == "w1@%h"
    assert argv[argv.index("--pidfile") + 1] == "/run/w.pid"
    assert argv[argv.index("-P") + 1] == "prefork"
    assert argv[argv.index("-l") + 1] == "DEBUG"
    assert {"--without-mingle", "--without-gossip", "--detach"} <= set(argv)


def test_worker_defaults_come_from_config(crossdock_home, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__DEFAULT_QUEUE", "main")
    monkeypatch.setenv("CROSSDOCK__CELERY__WORKER_CONCURRENCY", "5")
    conf.reload()
    argv = worker_argv(parse("worker"))
    assert argv[argv.index("-Q") + 1] == "main"
    assert argv[argv.index("-c") + 1] == "5"
    assert argv[argv.index("--pidfile") + 1] == str(crossdock_home / "crossdock-worker.pid")
    assert "--detach" not in argv


def test_autoscale_replaces_a_fixed_pool_and_bad_values_are_refused(crossdock_home):
    argv = worker_argv(parse("worker", "-a", "8,2"))
    assert argv[argv.index("--autoscale") + 1] == "8,2"
    assert "-c" not in argv
    with pytest.raises(CliError, match="MAX,MIN"):
        worker_argv(parse("worker", "-a", "lots"))
    with pytest.raises(CliError, match="at least 1"):
        worker_argv(parse("worker", "-c", "0"))


def test_flower_options_and_config_defaults(crossdock_home, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CELERY__FLOWER_BASIC_AUTH", "admin:secret")
    conf.reload()
    argv = flower_argv(parse("flower", "--port", "5600", "--url-prefix", "flower"))
    assert argv == ["flower", "--address=127.0.0.1", "--port=5600", "--url_prefix=flower",
                    "--basic_auth=admin:secret"]


def test_flower_listens_on_loopback_by_default_and_needs_no_auth_there(crossdock_home):
    assert flower_argv(parse("flower")) == ["flower", "--address=127.0.0.1", "--port=5555"]
    assert flower_argv(parse("flower", "--hostname", "::1"))[1] == "--address=::1"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "flower.example.internal", "::"])
def test_flower_refuses_to_listen_elsewhere_without_basic_auth(crossdock_home, monkeypatch, host):
    with pytest.raises(CliError, match=f"refusing to start Flower on {host} without authentication"):
        flower_argv(parse("flower", "--hostname", host))
    monkeypatch.setenv("CROSSDOCK__CELERY__FLOWER_HOST", host)
    conf.reload()
    with pytest.raises(CliError, match="flower_basic_auth"):
        flower_argv(parse("flower"))
    # basic auth, or an explicit override for a proxy that authenticates, lets it start
    assert flower_argv(parse("flower", "--basic-auth", "ops:pw"))[-1] == "--basic_auth=ops:pw"
    monkeypatch.setenv("CROSSDOCK__CELERY__FLOWER_ALLOW_UNAUTHENTICATED", "True")
    conf.reload()
    assert flower_argv(parse("flower"))[1] == f"--address={host}"


def test_stop_terminates_the_worker_in_the_pid_file_and_removes_the_file(tmp_path, capsys):
    got = tmp_path / "got-signal"
    ready = tmp_path / "ready"
    process = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(got)!r}, 'w').write('SIGTERM'), sys.exit(0)))\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(60)\n")])
    pid_file = tmp_path / "worker.pid"
    pid_file.write_text(f"{process.pid}\n")
    try:
        while not ready.exists():
            assert process.poll() is None
            time.sleep(0.01)
        assert stop_worker(parse("stop", "--pid", str(pid_file))) == 0
        assert process.poll() is not None
        assert got.read_text() == "SIGTERM"
        assert not pid_file.exists()
        assert f"stopped worker {process.pid}" in capsys.readouterr().out
    finally:
        process.kill()


def test_stop_with_a_stale_pid_file_removes_it(tmp_path, capsys):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    pid_file = tmp_path / "worker.pid"
    pid_file.write_text(str(process.pid))
    assert stop_worker(parse("stop", "--pid", str(pid_file))) == 0
    assert not pid_file.exists()
    assert "was not running" in capsys.readouterr().out


def test_stop_without_a_pid_file_says_where_it_looked(crossdock_home):
    with pytest.raises(CliError, match="no pid file at .*crossdock-worker.pid"):
        stop_worker(parse("stop"))


def test_quiet_goes_to_the_celery_command_itself_and_is_off_by_default():
    assert worker_argv(parse("worker", "--quiet"))[:2] == ["--quiet", "worker"]
    assert "--quiet" not in worker_argv(parse("worker"))
