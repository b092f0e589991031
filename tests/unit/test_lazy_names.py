"""``crossdock`` and ``crossdock.models`` export names without importing their modules first."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_models_import_sqlalchemy_only_when_a_table_is_used():
    code = ("import sys; import crossdock.models.taskinstancekey as key; import crossdock.models as models;"
            "before = 'sqlalchemy' in sys.modules; run = models.DagRun;"
            "print(before, 'sqlalchemy' in sys.modules, run.__module__, run is models.DagRun)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "crossdock.models.dagrun", "True"]


@pytest.mark.parametrize("module_name", ["crossdock", "crossdock.models"])
def test_an_unknown_name_is_an_attribute_error_naming_the_package(module_name):
    import importlib

    module = importlib.import_module(module_name)
    with pytest.raises(AttributeError, match=f"module '{module_name}' has no attribute 'Nope'"):
        module.Nope  # noqa: B018
    assert set(module.__all__) - {"__version__", "load_all"} <= set(dir(module))
