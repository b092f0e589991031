"""Operators and sensors that talk to a system crossdock runs on, at Airflow's provider paths.

They sit above both the authoring API and the executors (a sensor here may use Celery's
app), so the authoring package never has to import an executor.
"""
