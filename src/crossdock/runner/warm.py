"""What a warm process imports before it forks tasks, so no task pays for it again.

Imported by every zygote (the LocalExecutor's and each Celery pool process's): a forked
task child that still has to import the operator modules spends more time importing
than running.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

#: Modules every task try needs: the runner, the loader and the built-in operators.
PRELOAD_MODULES = (
    "crossdock.runner.fork",
    "crossdock.runner.task_runner",
    "crossdock.dag",
    "crossdock.dag.loader",
    "crossdock.dag.dag",
    "crossdock.dag.baseoperator",
    "crossdock.dag.bash_operator",
    "crossdock.dag.python_operator",
    "crossdock.dag.decorators",
    "crossdock.dag.sensors",
    "crossdock.dag.empty_operator",
    "crossdock.dag.schedule",
    "croniter",
    # Templates: a try whose fields hold {{ ... }} renders them; imported here once, the
    # jinja2 import costs each such forked try nothing.
    "crossdock.runner.templating",
    "crossdock.runner.macros",
    "jinja2.sandbox",
    # Every try installs the secrets masker on its log handler.
    "crossdock.secrets.masking",
)


def preload_task_modules() -> None:
    """Import :data:`PRELOAD_MODULES`; one that fails is logged, and tasks import it themselves."""
    for module in PRELOAD_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a broken optional module must not stop the worker
            log.warning("could not pre-import %s (tasks will import it): %s", module, exc)
    try:
        from crossdock.runner.templating import prime_jinja

        prime_jinja()
    except Exception as exc:  # noqa: BLE001 - templated tries then pay for it themselves
        log.warning("could not prepare Jinja for templated tasks: %s", exc)
