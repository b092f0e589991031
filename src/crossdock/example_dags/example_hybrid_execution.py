"""The hybrid DAG: one task in its own Kubernetes pod, two on Celery workers.

The queue decides where a task runs: ``kubernetes`` sends it to the
KubernetesExecutor (a fresh pod, here with small resources from ``pod_override``),
any other queue to the CeleryExecutor (persistent workers listening on that queue).
"""

from crossdock import DAG, BashOperator, PythonOperator

dag = DAG("hybrid_execution", schedule_interval=None, tags=["example"],
          description="Route tasks to Kubernetes or Celery by queue")

# This task runs on Kubernetes (ephemeral pod)
k8s_task = PythonOperator(
    task_id="kubernetes_task",
    python_callable=lambda: print("Running on Kubernetes"),
    queue="kubernetes",  # routes to the KubernetesExecutor
    executor_config={
        "pod_override": {
            "spec": {
                "containers": [{
                    "name": "base",
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"memory": "256Mi"},
                    },
                }]
            }
        }
    },
    dag=dag,
)

# This task runs on Celery workers (persistent workers)
celery_task = BashOperator(
    task_id="celery_task",
    bash_command='echo "Running on Celery"',
    queue="default",  # routes to the CeleryExecutor
    dag=dag,
)

# A custom queue also routes to Celery
high_memory_task = PythonOperator(
    task_id="high_memory_task",
    python_callable=lambda: print("High memory processing"),
    queue="high_memory",  # routes to the CeleryExecutor
    dag=dag,
)

k8s_task >> [celery_task, high_memory_task]
