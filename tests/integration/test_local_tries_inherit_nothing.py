"""A LocalExecutor try inherits none of the scheduler's settings: its zygote is a new
interpreter started with a try's environment, so neither the try nor the process it was
forked from holds the database URL (not in os.environ, not in /proc/*/environ)."""

from __future__ import annotations

import json

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files

DAG_FILE = '''
import json, os
from crossdock import DAG, PythonOperator

def look():
    seen = {{}}
    for who, pid in (("try", os.getpid()), ("zygote", os.getppid())):
        with open(f"/proc/{{pid}}/environ", "rb") as handle:
            seen[who] = b"SQL_ALCHEMY_CONN" in handle.read()
    seen["os.environ"] = any("SQL_ALCHEMY_CONN" in name for name in os.environ)
    with open({out!r}, "w") as handle:
        json.dump(seen, handle)

with DAG("inherit", schedule=None) as dag:
    PythonOperator(task_id="look", python_callable=look)
'''


def test_a_local_try_and_its_zygote_hold_no_database_setting(crossdock_home, monkeypatch):
    from crossdock.executors.local_executor import LocalExecutor

    out = crossdock_home / "seen.json"
    folder = use_dag_files(crossdock_home, monkeypatch, {"inherit.py": DAG_FILE.format(out=str(out))},
                           DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{crossdock_home / 'crossdock.db'}")
    parse_and_trigger(folder, "inherit")
    run_scheduler(LocalExecutor(parallelism=1))
    assert run_states("inherit")[0] == "success"
    assert json.loads(out.read_text()) == {"try": False, "zygote": False, "os.environ": False}
