"""Jinja rendering of a task's ``template_fields``, in the try, just before ``execute``.

Rendering happens where the task runs, not where the DAG is parsed, because the values
it needs (the logical date, the try's ids) exist only for one try. Most tasks hold no
template at all, and importing Jinja costs more than a whole no-op try; so a task is
scanned first with plain string tests and Jinja is imported only when some field holds
template syntax or names a template file.

An :class:`~crossdock.dag.xcom_arg.XComArg` in a field (a TaskFlow argument, an
``op.output``) is replaced by the value it refers to in the same pass.

Every rendering problem (an unknown name, a syntax error, a missing template file)
raises :class:`TemplateRenderError`: the try fails with its one-line message, which
names the field, the task and, when Jinja knows it, the file and line.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Sequence

from crossdock.dag.exceptions import TaskFailure
from crossdock.dag.template_check import TEMPLATE_MARKERS
from crossdock.dag.xcom_arg import XComArg
from crossdock.exceptions import UserFacingError



class TemplateRenderError(TaskFailure, UserFacingError):
    """A template field could not be rendered; the message says which and why."""


# -- deciding ---------------------------------------------------------------------------
def _holds_template(value: Any, extensions: tuple[str, ...], *, strings_only: bool = False) -> bool:
    """Whether ``value`` holds template syntax, a template file name or (unless
    ``strings_only``) an XComArg to resolve."""
    if isinstance(value, XComArg):
        return not strings_only
    if isinstance(value, str):
        return any(marker in value for marker in TEMPLATE_MARKERS) or (
            bool(extensions) and value.endswith(extensions))
    if isinstance(value, Mapping):
        return any(_holds_template(item, extensions, strings_only=strings_only) for item in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_template(item, extensions, strings_only=strings_only) for item in value)
    return False


def _template_fields(task: Any) -> Iterator[tuple[str, Any]]:
    for name in getattr(task, "template_fields", ()) or ():
        if not hasattr(task, name):
            raise TemplateRenderError(
                f"task {task.task_id!r} lists template field {name!r} but has no attribute of that name")
        yield name, getattr(task, name)


def needs_rendering(task: Any) -> bool:
    """True when some template field of ``task`` holds a template (checked without Jinja)."""
    extensions = tuple(getattr(task, "template_ext", ()) or ())
    return any(_holds_template(value, extensions) for _, value in _template_fields(task))


# -- the environment --------------------------------------------------------------------
def template_searchpath(dag: Any) -> list[str]:
    """Where template files are looked up: the DAG file's folder, then ``template_searchpath``."""
    folder = os.path.dirname(os.path.abspath(dag.fileloc)) if getattr(dag, "fileloc", None) else os.getcwd()
    extra = [os.path.join(folder, path) for path in getattr(dag, "template_searchpath", ()) or ()]
    return [folder, *extra]


def _date_filter(pattern: str | None):
    def apply(value: Any) -> str:
        return value.strftime(pattern) if pattern else value.isoformat()
    return apply


def template_environment(dag: Any):
    """The Jinja environment of ``dag``'s templates (Airflow's settings: undefined names fail)."""
    import jinja2

    options: dict[str, Any] = {
        "loader": jinja2.FileSystemLoader(template_searchpath(dag)),
        "undefined": jinja2.StrictUndefined,
        "extensions": ["jinja2.ext.do"],
        "keep_trailing_newline": True,
    }
    if getattr(dag, "render_template_as_native_obj", False):
        from jinja2.nativetypes import NativeEnvironment

        environment = NativeEnvironment(**options)
    else:
        from jinja2.sandbox import SandboxedEnvironment

        environment = SandboxedEnvironment(**options)
    environment.filters.update({"ds": _date_filter("%Y-%m-%d"), "ds_nodash": _date_filter("%Y%m%d"),
                                "ts": _date_filter(None), "ts_nodash": _date_filter("%Y%m%dT%H%M%S")})
    environment.filters.update(getattr(dag, "user_defined_filters", None) or {})
    environment.globals.update(getattr(dag, "user_defined_macros", None) or {})
    return environment


# -- rendering --------------------------------------------------------------------------
def render_value(value: Any, context: Mapping[str, Any], environment: Any,
                 extensions: Sequence[str] = ()) -> Any:
    """``value`` with every string in it rendered and every XComArg resolved; containers are
    rebuilt, dict keys kept. A pulled value is not rendered again (it is data, not a template)."""
    if isinstance(value, XComArg):
        return value.resolve(context)
    if isinstance(value, str):
        if extensions and value.endswith(tuple(extensions)):
            return environment.get_template(value).render(context)
        if not any(marker in value for marker in TEMPLATE_MARKERS):
            return value
        return environment.from_string(value).render(context)
    if isinstance(value, Mapping):
        return {key: render_value(item, context, environment, extensions) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [render_value(item, context, environment, extensions) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def render_template_fields(task: Any, context: Mapping[str, Any]) -> None:
    """Render each of ``task``'s template fields in place; nothing happens (no Jinja) without templates."""
    if not needs_rendering(task):
        return
    extensions = tuple(getattr(task, "template_ext", ()) or ())
    fields = list(_template_fields(task))
    if not any(_holds_template(value, extensions, strings_only=True) for _, value in fields):
        # Only XComArgs (TaskFlow arguments): resolved without building a Jinja environment.
        for name, value in fields:
            setattr(task, name, render_value(value, context, None, extensions))
        return
    import jinja2

    environment = template_environment(task.dag)
    for name, value in fields:
        try:
            rendered = render_value(value, context, environment, extensions)
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(
                f"cannot render template field {name!r} of task {task.task_id!r}: "
                f"{_describe(exc, environment)}") from None
        setattr(task, name, rendered)


def _describe(exc: Exception, environment: Any) -> str:
    import jinja2

    if isinstance(exc, jinja2.TemplateNotFound):
        searched = ", ".join(environment.loader.searchpath)
        return f"template file {exc.name!r} not found (searched: {searched})"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"{exc.filename or exc.name}, line {exc.lineno}" if exc.filename or exc.name else f"line {exc.lineno}"
        return f"template syntax error at {where}: {exc.message}"
    return str(exc.message if getattr(exc, "message", None) else exc)


def template_field_values(task: Any) -> list[tuple[str, Any]]:
    """``(name, value)`` of each template field, as ``tasks render`` prints them."""
    return list(_template_fields(task))


def prime_jinja() -> None:
    """Build and use one environment so Jinja's lexer (its compiled regexes, cached by
    settings) exists before a warm process forks: a templated forked try then does not
    compile it again, which costs more than the rest of a no-op try."""
    template_environment(None).from_string("{{ primed }}").render(primed=True)
