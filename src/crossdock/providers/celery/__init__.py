"""What Airflow's Celery provider offers DAG authors."""
