"""A small ETL-shaped DAG: extract, two transforms in parallel, load.

``flaky_transform`` fails on its first try and succeeds on the retry, so a run of this
DAG shows a retry happening (try 1 failed, try 2 succeeded).
"""

from datetime import timedelta

from crossdock import DAG, BashOperator, task

with DAG("example_bash_python", schedule=None, tags=["example"],
         description="extract >> [transform_a, flaky_transform] >> load",
         default_args={"retries": 0}) as dag:

    @task
    def extract():
        rows = [{"id": n, "value": n * n} for n in range(5)]
        print(f"extracted {len(rows)} rows")
        return len(rows)

    transform_a = BashOperator(
        task_id="transform_a",
        bash_command='echo "transforming in $CROSSDOCK_CTX_DAG_ID / $CROSSDOCK_CTX_TASK_ID"',
    )

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def flaky_transform(try_number=None):
        if try_number == 1:
            raise RuntimeError("simulated failure on the first try; the retry will succeed")
        print(f"transform succeeded on try {try_number}")

    @task
    def load(**context):
        print(f"loading results of run {context['run_id']}")

    extract() >> [transform_a, flaky_transform()] >> load()
