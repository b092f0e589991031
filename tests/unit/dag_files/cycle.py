"""A crossdock DAG whose tasks depend on each other in a circle."""

from crossdock import DAG, BashOperator

with DAG("circular") as dag:
    a = BashOperator("a", "true")
    b = BashOperator("b", "true")
    a >> b
    b >> a
