"""Names a package exports without importing their modules until first use.

``crossdock`` and ``crossdock.models`` are imported by every CLI call, worker and pod,
most of which never touch the authoring API or the table definitions; importing those
eagerly would cost each of them SQLAlchemy's and the operators' import time. Each
package lists its public names and where they live, and gets its module-level
``__getattr__`` and ``__dir__`` (PEP 562) from here.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(namespace: dict[str, Any], sources: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module whose ``globals()`` is ``namespace``.

    ``sources`` maps each public name to the module that defines it. A name is imported
    on first access and then stored in ``namespace``, so later lookups are plain ones.
    """
    module_name = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(sources))

    return __getattr__, __dir__
