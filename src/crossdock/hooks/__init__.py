"""Hooks: how task code reaches outside systems (``crossdock.hooks.base.BaseHook``, as ``airflow.hooks.base``)."""
