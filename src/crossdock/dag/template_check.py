"""Template syntax checked when a DAG file is parsed, so a typo is an import error naming
the file, the task, the field and the line instead of a failed try hours later.

Only syntax is checked here: whether a name is defined depends on the try's context
(and ``user_defined_macros``), so an unknown name still fails at render time, naming it.
Jinja is imported only for a DAG that holds some template.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

from crossdock.dag.exceptions import DagDefinitionError
from crossdock.dag.xcom_arg import nested_leaves

#: What makes a string a template: an expression, a statement or a comment.
TEMPLATE_MARKERS = ("{{", "{%", "{#")


def _template_strings(value: Any) -> Iterator[str]:
    return (leaf for leaf in nested_leaves(value) if isinstance(leaf, str))


def _sources(task: Any, folders: list[str]) -> Iterator[tuple[str, str, str | None]]:
    """(field, template source, file name or None) of every template in ``task``'s fields."""
    extensions = tuple(getattr(task, "template_ext", ()) or ())
    for name in getattr(task, "template_fields", ()) or ():
        for text in _template_strings(getattr(task, name, None)):
            if extensions and text.endswith(extensions):
                for folder in folders:
                    path = os.path.join(folder, text)
                    if os.path.isfile(path):
                        with open(path, encoding="utf-8", errors="replace") as handle:
                            yield name, handle.read(), path
                        break
            elif any(marker in text for marker in TEMPLATE_MARKERS):
                yield name, text, None


def check_dag_templates(dag: Any) -> None:
    """Raise :class:`DagDefinitionError` for the first template of ``dag`` that does not parse."""
    folder = os.path.dirname(os.path.abspath(dag.fileloc)) if getattr(dag, "fileloc", None) else os.getcwd()
    folders = [folder, *(os.path.join(folder, extra) for extra in getattr(dag, "template_searchpath", ()) or ())]
    environment = None
    for task in dag.tasks:
        for field, source, path in _sources(task, folders):
            if environment is None:
                import jinja2

                environment = jinja2.Environment(extensions=["jinja2.ext.do"])
            try:
                environment.parse(source)
            except Exception as exc:  # jinja2.TemplateSyntaxError, without importing Jinja up front
                where = f"{path}, line {getattr(exc, 'lineno', '?')}" if path else f"line {getattr(exc, 'lineno', '?')}"
                raise DagDefinitionError(
                    f"DAG {dag.dag_id!r}, task {task.task_id!r}: template field {field!r} has a syntax "
                    f"error at {where}: {getattr(exc, 'message', None) or exc}") from None
