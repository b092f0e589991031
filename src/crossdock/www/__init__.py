"""The REST API and the web UI, served by ``crossdock webserver`` (one process, FastAPI on uvicorn).

The API lives under ``/api/v1`` with Airflow 2's stable REST API paths and field names
where Airflow has them (so its scripts and clients mostly work), crossdock's own under
``/api/v1/crossdock``; the UI is static pages under ``/`` that read and act through the
same API. Every read and action is a call into :mod:`crossdock.operations` (design
principle 9); nothing here queries or writes the database on its own.
"""
