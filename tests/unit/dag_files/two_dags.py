"""Two crossdock DAGs: one bound to a global, one only created inside a with block."""

from datetime import datetime

from crossdock import DAG, BashOperator, task

named = DAG("named_dag", schedule="@daily", start_date=datetime(2024, 1, 1))
BashOperator("hello", "echo hello", dag=named)

with DAG("anonymous_dag"):  # no "as": found through the loader's registry

    @task
    def one():
        print("one")

    one() >> BashOperator("two", "echo two")
