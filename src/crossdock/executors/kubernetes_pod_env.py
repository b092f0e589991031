"""The environment of a pod that runs on the scheduler's own machine (``share_local_environment``).

The local pod runtime runs each pod as a process here; such a pod can use this very
install, configuration and folders, which a pod on a cluster gets from its image.
"""

from __future__ import annotations

import os
import sys

from crossdock.config_secrets import environment_for_try
from crossdock.configuration import conf

#: What every pod's runner is told, wherever it runs: copy the try's log to the container's
#: stdout, so ``kubectl logs`` shows what the task printed (the executor keeps it after the pod).
POD_RUNNER_ENV = {"CROSSDOCK__LOGGING__TASK_LOG_TO_STDOUT": "True"}

#: Environment variables handed to pods that run on this machine (share_local_environment).
LOCAL_ENV_NAMES = ("PYTHONPATH", "VIRTUAL_ENV", "CROSSDOCK_HOME", "CROSSDOCK_CONFIG")


def local_environment() -> dict[str, str]:
    """What a pod on this machine needs to run ``crossdock tasks run`` like this process would.

    ``crossdock`` is this install (bin folder first on PATH), with the scheduler's home, config, DAG
    and log folders; never the secrets a pods list would show (:func:`environment_for_try`)."""
    env: dict[str, str] = {}
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(part for part in (bin_dir, os.environ.get("PATH", "")) if part)
    for name in LOCAL_ENV_NAMES:
        if os.environ.get(name):
            env[name] = os.environ[name]
    for name, value in environment_for_try(os.environ).items():
        if name.startswith("CROSSDOCK__"):
            env[name] = value
    env["CROSSDOCK__CORE__DAGS_FOLDER"] = os.path.abspath(os.path.expanduser(conf.getstr("core", "dags_folder")))
    env["CROSSDOCK__LOGGING__BASE_LOG_FOLDER"] = os.path.abspath(
        os.path.expanduser(conf.getstr("logging", "base_log_folder")))
    return env
