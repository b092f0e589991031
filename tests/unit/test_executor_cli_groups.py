"""The command groups executors vend: described without the CLI, run by the CLI."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
from crossdock.executors.kubernetes_executor import KubernetesExecutor


@pytest.mark.parametrize("executor", [CeleryExecutor, KubernetesExecutor, CeleryKubernetesExecutor])
def test_every_vended_command_names_a_handler_the_cli_defines(executor):
    groups = executor.get_cli_commands()
    assert groups
    for group in groups:
        for command in group.subcommands:
            module_name, _, name = command.func.dotted_path.rpartition(".")
            assert module_name.startswith("crossdock.cli."), command.name
            assert callable(getattr(importlib.import_module(module_name), name)), command.name


def test_the_hybrid_vends_both_groups_in_order():
    assert [group.name for group in CeleryKubernetesExecutor.get_cli_commands()] == ["celery", "kubernetes"]


def test_describing_the_groups_imports_nothing_of_the_cli():
    code = ("import sys\n"
            "from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor\n"
            "CeleryKubernetesExecutor.get_cli_commands()\n"
            "print(sorted(m for m in sys.modules if m.startswith('crossdock.cli.') or m == 'crossdock.cli'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
