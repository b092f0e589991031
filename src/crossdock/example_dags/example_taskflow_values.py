"""Values between tasks: TaskFlow return values, multiple outputs, a pod step and templates.

``extract`` returns a dict; ``transform`` gets it as its argument and returns two values
at once (``multiple_outputs``); ``load`` takes them in a Kubernetes pod; ``report`` pulls
one of them into a Jinja template next to the run's date and a DAG param. Each value
travels back with its try's outcome and out with the next try's command: no task touches
the metadata database.
"""

from crossdock import DAG, BashOperator, task

with DAG("taskflow_values", schedule_interval=None, tags=["example"], params={"who": "world"},
         description="Pass values between tasks, across Celery and a pod") as dag:

    @task
    def extract() -> dict:
        return {"a": 1, "b": 2}

    @task(multiple_outputs=True)
    def transform(d: dict) -> dict:
        return {"total": sum(d.values()), "n": len(d)}

    @task(queue="kubernetes")  # the values cross into a pod, and its result comes back
    def load(total: int, n: int) -> float:
        print(f"mean: {total / n}")
        return total / n

    data = extract()
    totals = transform(data)
    load(totals["total"], totals["n"])
    report = BashOperator(
        task_id="report",
        bash_command="echo {{ ds }} {{ ti.xcom_pull(task_ids='extract')['a'] }} {{ params.who }}")
    data >> report
