"""Many ``crossdock dags trigger`` calls at once: each creates its run or fails saying why.

Real CLI processes, started together in batches (all of a batch run at the same time),
on SQLite and on the real PostgreSQL. The DAG is not parsed beforehand, so the first
batch also races to parse it into the database. What must hold: every call that exited
0 printed a run_id that exists, no two printed the same one, the number of runs equals
the number of successful calls, and a call that failed printed a one-line reason (no
traceback) on stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select

from crossdock.database import create_session
from crossdock.models import DagRun

#: The issue's figure, 200 calls per database, costs minutes of interpreter starts on two
#: cores; the default suite starts one batch of 40 at once, and
#: ``CROSSDOCK_HEAVY_TESTS=1`` runs all 200 (four batches of 50).
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


def _run_batch(env: dict[str, str], count: int) -> list[tuple[int, str, str]]:
    processes = [subprocess.Popen([sys.executable, "-m", "crossdock", "dags", "trigger", "many_triggers"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=CALL_TIMEOUT)
        results.append((process.returncode, out, err))
    return results


@pytest.mark.timeout(1200)  # 200 interpreter starts on two cores
def test_concurrent_triggers_each_create_their_run_or_fail_loudly(backend, dags_folder, crossdock_home):
    (dags_folder / "many_triggers.py").write_text(DAG_FILE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k.startswith("CROSSDOCK__") or not k.startswith("CROSSDOCK")}
    env.update(CROSSDOCK_HOME=str(crossdock_home), CROSSDOCK__CORE__DAGS_FOLDER=str(dags_folder))
    results: list[tuple[int, str, str]] = []
    for start in range(0, CALLS, BATCH):
        results += _run_batch(env, min(BATCH, CALLS - start))
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
