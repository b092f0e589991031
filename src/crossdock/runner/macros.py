"""``context["macros"]``: the helpers Airflow's templates call as ``macros.<name>``.

The module itself is the object templates see, as in Airflow. ``time``, ``uuid``,
``random`` and ``dateutil`` are imported on first use only: building the context of
every try must not pay for modules that few templates touch.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Any

__all__ = ["datetime", "timedelta", "ds_add", "ds_format", "time", "uuid", "random", "dateutil"]

DS_FORMAT = "%Y-%m-%d"

#: Names resolved on first access: the module to import and the attribute of it (None: the module).
_LAZY = {"time": ("time", None), "uuid": ("uuid", None), "random": ("random", "random"),
         "dateutil": ("dateutil", None)}


def ds_add(ds: str, days: int) -> str:
    """``ds`` (``YYYY-MM-DD``) moved by ``days`` days, negative ones included."""
    return (datetime.strptime(ds, DS_FORMAT) + timedelta(days=days)).strftime(DS_FORMAT)


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """A date string read with ``input_format`` and written with ``output_format``."""
    return datetime.strptime(ds, input_format).strftime(output_format)


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"macros has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # dateutil is optional
        raise AttributeError(f"macros.{name} is not available: {module_name} is not installed") from None
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
