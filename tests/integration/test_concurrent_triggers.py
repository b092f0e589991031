"""Many ``crossdock dags trigger`` calls at once: each creates its run or fails saying why.

Real processes, started together in batches (all of a batch run at the same time), each
running the CLI's ``main`` with the arguments a user types, on SQLite and on the real
PostgreSQL. They are forked from one process that has imported crossdock (and opened no
database): an interpreter start per call costs half a second of CPU, so on two cores 40
fresh interpreters spread their calls over ten seconds and mostly measure imports, while
forks hit the database within a fraction of a second of each other. The DAG is not parsed
beforehand, so the first batch also races to parse it into the database. What must hold:
every call that exited 0 printed a run_id that exists, no two printed the same one, the
number of runs equals the number of successful calls, and a call that failed printed a
one-line reason (no traceback) on stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crossdock.database import create_session
from crossdock.models import DagRun

#: The issue's figure, 200 calls per database, takes most of a minute on two cores; the
#: default suite starts one batch of 40 at once, and ``CROSSDOCK_HEAVY_TESTS=1`` runs all
#: 200 (four batches of 50).
CALLS = 200 if os.environ.get("CROSSDOCK_HEAVY_TESTS") == "1" else 40
#: Calls started at the same time; the machine has two cores, so 200 at once only
#: measures the scheduler of the operating system.
BATCH = 50
CALL_TIMEOUT = 600

DAG_FILE = textwrap.dedent("""
    from crossdock import DAG, BashOperator

    with DAG("many_triggers", schedule=None) as dag:
        BashOperator(task_id="noop", bash_command="true")
""")

QUEUED = re.compile(r"queued run '([^']+)' of DAG 'many_triggers'")


#: Forks ``count`` processes that each run ``crossdock <args>`` (as ``python -m crossdock``
#: does: ``main``'s return value is the exit code, an escaping exception prints its traceback
#: and exits 1), their output in ``<folder>/<i>.out`` and ``.err``; prints each exit code.
FORKING_LAUNCHER = textwrap.dedent("""
    import os, sys, traceback
    from crossdock.cli.main import main
    import crossdock.cli.dags_command  # what a trigger imports, imported once before the forks

    count, folder, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    children = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            for fd, suffix in ((1, "out"), (2, "err")):
                os.dup2(os.open(os.path.join(folder, f"{index}.{suffix}"), os.O_WRONLY | os.O_CREAT, 0o600), fd)
            try:
                code = main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children.append(pid)
    for index, pid in enumerate(children):
        print(index, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
""")


def _run_batch(env: dict[str, str], count: int, folder: Path) -> list[tuple[int, str, str]]:
    folder.mkdir()
    launcher = subprocess.run([sys.executable, "-c", FORKING_LAUNCHER, str(count), str(folder),
                               "dags", "trigger", "many_triggers"],
                              env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert launcher.returncode == 0, launcher.stderr
    codes = dict(line.split() for line in launcher.stdout.splitlines())
    assert len(codes) == count, launcher.stdout
    return [(int(codes[str(index)]), (folder / f"{index}.out").read_text(), (folder / f"{index}.err").read_text())
            for index in range(count)]


@pytest.mark.timeout(1200)  # 200 calls with CROSSDOCK_HEAVY_TESTS=1
def test_concurrent_triggers_each_create_their_run_or_fail_loudly(backend, dags_folder, crossdock_home, tmp_path):
    (dags_folder / "many_triggers.py").write_text(DAG_FILE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k.startswith("CROSSDOCK__") or not k.startswith("CROSSDOCK")}
    env.update(CROSSDOCK_HOME=str(crossdock_home), CROSSDOCK__CORE__DAGS_FOLDER=str(dags_folder))
    results: list[tuple[int, str, str]] = []
    for start in range(0, CALLS, BATCH):
        results += _run_batch(env, min(BATCH, CALLS - start), tmp_path / f"batch-{start}")
    assert len(results) == CALLS

    succeeded = [out for code, out, _ in results if code == 0]
    failures = [(code, err) for code, _, err in results if code != 0]
    printed = [match.group(1) for out in succeeded for match in [QUEUED.search(out)] if match]
    assert len(printed) == len(succeeded), f"a successful call did not say which run it queued: {succeeded}"
    assert len(set(printed)) == len(printed), "two calls reported the same run"
    with create_session() as session:
        stored = set(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == "many_triggers")))
        count = session.scalar(select(func.count()).select_from(DagRun).where(DagRun.dag_id == "many_triggers"))
    assert set(printed) <= stored, f"runs reported but not stored: {sorted(set(printed) - stored)[:5]}"
    assert count == len(succeeded), f"{count} runs stored for {len(succeeded)} successful calls"
    for code, err in failures:
        assert "Traceback" not in err and err.strip().startswith("crossdock: error:"), \
            f"a failed call (exit {code}) did not say why in one line:\n{err[-2000:]}"
    # Honest failures are allowed by the contract, but two cores must cope with this load.
    assert len(failures) <= CALLS // 20, f"{len(failures)} of {CALLS} calls failed, e.g. {failures[0][1][-500:]}"
    print(f"{backend}: {len(succeeded)} runs created, {len(failures)} calls failed with a reason")
    for code, err in failures:
        print(f"  exit {code}: {err.strip()}")
