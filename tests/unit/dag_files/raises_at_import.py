"""A crossdock DAG file that fails while it is imported."""

from crossdock import DAG

dag = DAG("before_the_error")


def load_settings():
    raise RuntimeError("settings service unreachable")


SETTINGS = load_settings()
