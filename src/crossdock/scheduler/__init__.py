"""The scheduler: one process that turns DAG runs into executor work and records outcomes."""
