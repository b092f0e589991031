"""Every error crossdock raises on purpose hangs from one root, and the CLI relies on it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import crossdock
from crossdock.cli.errors import CliError
from crossdock.configuration import ConfigError
from crossdock.dag.exceptions import (
    DagCycleError,
    DagDefinitionError,
    DagFileError,
    DagNotFound,
    DuplicateTaskIdError,
    TaskFailure,
    TaskNotFound,
)
from crossdock.dag.fork_server import _ServerGone
from crossdock.database import DatabaseError
from crossdock.exceptions import CrossdockError, UserFacingError
from crossdock.runner.dag_file_policy import DagFileNotAllowed
from crossdock.runner.interrupt import TaskInterrupted, TaskTimeout
from crossdock.scheduler.dag_runs import DagRunCreationError, DagRunExistsError
from crossdock.scheduler.leadership import LeadershipLost

#: Modules the walk does not import: Alembic's env runs migrations on import, the
#: example DAGs are DAG files, and ``__main__`` is the command line itself.
SKIPPED_MODULES = ("crossdock.migrations", "crossdock.example_dags")


def _exception_classes():
    for info in pkgutil.walk_packages(crossdock.__path__, "crossdock."):
        if info.name.startswith(SKIPPED_MODULES) or info.name.endswith(".__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__ and not name.startswith("_")):
                yield value


def test_every_public_exception_class_derives_from_crossdock_error():
    classes = list(_exception_classes())
    assert DagNotFound in classes and LeadershipLost in classes  # the walk reached the packages
    outside = sorted(f"{error.__module__}.{error.__qualname__}" for error in classes
                     if not issubclass(error, (CrossdockError, TaskInterrupted)))
    assert outside == []
    interrupts = [error for error in classes if issubclass(error, TaskInterrupted)]
    assert interrupts and not any(issubclass(error, (Exception, CrossdockError)) for error in interrupts)


# (class, builtin base that callers catch it by, or None)
USER_FACING = [
    (ConfigError, None), (DatabaseError, None), (CliError, None), (DagFileError, None),
    (DagNotFound, LookupError), (DagRunExistsError, ValueError), (DagRunCreationError, RuntimeError),
    (DagDefinitionError, ValueError), (DagCycleError, ValueError), (DuplicateTaskIdError, ValueError),
    (TaskNotFound, KeyError), (DagFileNotAllowed, ValueError),
]


@pytest.mark.parametrize(("error", "builtin"), USER_FACING, ids=[e.__name__ for e, _ in USER_FACING])
def test_what_a_user_can_fix_is_user_facing_and_keeps_its_builtin_base(error, builtin):
    assert issubclass(error, UserFacingError)
    if builtin is not None:
        assert issubclass(error, builtin)


@pytest.mark.parametrize("error", [TaskFailure, _ServerGone, LeadershipLost])
def test_internal_errors_are_crossdock_errors_but_not_shown_as_user_errors(error):
    assert issubclass(error, CrossdockError) and not issubclass(error, UserFacingError)


def test_a_timeout_is_not_swallowed_by_a_tasks_except_exception():
    assert not issubclass(TaskInterrupted, Exception)
    with pytest.raises(TaskTimeout):
        try:
            raise TaskTimeout(1)
        except Exception:  # noqa: BLE001 - what task code commonly writes
            pytest.fail("a task's `except Exception` caught its own timeout")



def test_one_class_says_no_such_dag_for_the_loader_and_for_triggers():
    from crossdock.scheduler.dag_runs import DagNotFoundError

    assert DagNotFoundError is DagNotFound
    error = DagNotFound("ghost")
    assert error.dag_id == "ghost" and str(error) == "DAG 'ghost' not found"
    assert isinstance(error, LookupError)


def test_triggering_an_unknown_dag_raises_it_naming_the_dag():
    from crossdock import database
    from crossdock.scheduler.dag_runs import trigger_dag_run

    database.migrate()
    with pytest.raises(DagNotFound) as info:
        trigger_dag_run("ghost")
    assert info.value.dag_id == "ghost"
    assert str(info.value) == "DAG 'ghost' not found; no DAGs are parsed yet"


class _NewUserError(UserFacingError):
    """A user error the CLI was never told about by name."""


def _cli_raising(monkeypatch, error: BaseException) -> None:
    """Give the CLI a single command, ``boom``, whose handler raises ``error``."""
    from crossdock.cli import main as cli_main
    from crossdock.cli.definition import ActionCommand

    def handler(_args):
        raise error

    monkeypatch.setattr(cli_main, "_commands", lambda: [ActionCommand("boom", "raise", handler)])


CLI_USER_ERRORS = [
    _NewUserError("the widget is not wound"),
    ConfigError("[core] parallelism = 'x' is not an integer"),
    DatabaseError("cannot use the metadata database at sqlite:///x: locked"),
    DagNotFound("ghost"),
    DagRunExistsError("DAG 'd' already has a run with run_id 'r1'"),
    DagRunCreationError("no free run_id for DAG 'd' after 50 tries"),
    CliError("--conf must be a JSON object"),
    DuplicateTaskIdError("d", "t"),
    TaskNotFound("d", "t"),
    DagFileError("/dags/x.py", "SyntaxError: invalid syntax"),
]


@pytest.mark.parametrize("error", CLI_USER_ERRORS, ids=lambda e: type(e).__name__)
def test_a_user_error_from_a_command_is_one_line_and_exit_1(monkeypatch, capsys, error):
    from crossdock.cli.main import main

    monkeypatch.delenv("CROSSDOCK_DEBUG", raising=False)
    _cli_raising(monkeypatch, error)
    assert main(["boom"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"crossdock: error: {error}\n" and captured.out == ""


@pytest.mark.parametrize("error", [RuntimeError("a bug"), ValueError("a bug"), TaskFailure("a bug")],
                         ids=lambda e: type(e).__name__)
def test_any_other_error_from_a_command_escapes_with_its_traceback(monkeypatch, error):
    from crossdock.cli.main import main

    monkeypatch.delenv("CROSSDOCK_DEBUG", raising=False)
    _cli_raising(monkeypatch, error)
    with pytest.raises(type(error)) as info:
        main(["boom"])
    assert info.value is error


def test_crossdock_debug_shows_the_traceback_of_a_user_error(monkeypatch):
    from crossdock.cli.main import main

    monkeypatch.setenv("CROSSDOCK_DEBUG", "1")
    _cli_raising(monkeypatch, _NewUserError("the widget is not wound"))
    with pytest.raises(_NewUserError):
        main(["boom"])


def test_an_operators_own_checks_name_its_dag_and_task():
    from crossdock.dag import DAG, BashOperator, PythonOperator

    with DAG("ops"):
        with pytest.raises(DagDefinitionError, match=r"^DAG 'ops', task 'b': env must be a dict of strings$"):
            BashOperator("b", "true", env=["A=1"])
        with pytest.raises(DagDefinitionError, match=r"^DAG 'ops', task 'p': op_kwargs must be a dict$"):
            PythonOperator("p", print, op_kwargs=[1])
    with pytest.raises(DagDefinitionError, match=r"^task 'b': bash_command must be a non-empty string, not ''$"):
        BashOperator("b", "")
    with pytest.raises(DagDefinitionError, match=r"^task 'p': python_callable must be callable, not 3$"):
        PythonOperator("p", 3)
