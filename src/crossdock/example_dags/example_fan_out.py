"""Fan-out / fan-in: twenty independent short tasks feeding one join task."""

from crossdock import DAG, BashOperator, task

#: How many parallel tasks the DAG fans out to.
WIDTH = 20

with DAG("example_fan_out", schedule=None, tags=["example"],
         description=f"{WIDTH} parallel tasks, then a join") as dag:

    @task
    def join():
        print("all branches finished")

    branches = [BashOperator(task_id=f"branch_{number:02d}", bash_command=f"echo branch {number}")
                for number in range(WIDTH)]
    branches >> join()
