"""Params: named values a DAG declares, with a JSON Schema each, that a run's conf may override.

``DAG(params={"n": Param(10, type="integer", minimum=0), "who": "world"})`` declares two;
a task sees their values as ``context["params"]``. A :class:`Param` holds a default and a
schema (the JSON Schema keywords given to it: ``type``, ``enum``, ``minimum``, ``pattern``,
``format``, ``items`` ...); a plain value is a Param with no schema, which accepts anything.
A Param without a default is required: a run must give it in its conf.

Three places check them, as Airflow 2.x does:

* parsing (:func:`check_dag_params`, called by the DAG-file processor): a schema that is not
  JSON Schema is an import error, and so is a DAG with a schedule whose params do not all
  have valid defaults, since its scheduled runs (which carry no conf) could never start;
* triggering (:func:`validate_run_conf`, from the serialized DAG): the conf over the
  defaults must validate, or no run is created;
* the try (:func:`resolve_params`): DAG params, then the task's, then the run's conf.

Validation imports :mod:`jsonschema` only when a Param with a schema is resolved: a try of a
DAG that uses no Param (or only plain values) never pays for that import.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any, Iterator

from crossdock.exceptions import UserFacingError


class _NotSet:
    """The type of :data:`NOTSET`: "no value given", which None cannot say (None is a value)."""

    _instance: "_NotSet | None" = None

    def __new__(cls) -> "_NotSet":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return _NotSet, ()


#: A Param's default when it has none (the Param is then required).
NOTSET: Any = _NotSet()


class ParamValidationError(UserFacingError, ValueError):
    """A param's value breaks its schema, or a required param got no value.

    ``param`` is the param's name once known, and ``problem`` the rule broken, worded to
    follow the value (``"25 is greater than the maximum of 20"``).
    """

    def __init__(self, message: str, *, param: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.param = param
        self.problem = problem if problem is not None else message

    def __reduce__(self):
        return _rebuild_error, (str(self), self.param, self.problem)

    def naming(self, param: str) -> "ParamValidationError":
        """The same problem, said of the param called ``param``."""
        return ParamValidationError(f"param {param!r}: {self.problem}", param=param, problem=self.problem)

    def within(self, prefix: str) -> "ParamValidationError":
        """The same error with ``prefix`` (what was being done) before it."""
        return ParamValidationError(f"{prefix}: {self}", param=self.param, problem=self.problem)


def _rebuild_error(message: str, param: str | None, problem: str) -> ParamValidationError:
    return ParamValidationError(message, param=param, problem=problem)


REQUIRED_PROBLEM = "required, but no value was given and it has no default"

_format_checker: Any = None


def _validator(schema: Mapping[str, Any]) -> Any:
    """A jsonschema validator of ``schema`` (its draft by ``$schema``, else the newest), checked.

    ``format`` is asserted with jsonschema's all-drafts checker, as Airflow does:
    ``date``, ``date-time`` (RFC 3339), ``time`` (``HH:MM:SS``, which is what Airflow's
    examples and trigger form give), ``email``, ``ipv4``, ``ipv6``, ``uuid`` and ``regex``
    are checked; formats whose checker needs a package that is not installed are accepted
    unchecked, as JSON Schema allows.
    """
    global _format_checker
    import jsonschema
    from jsonschema.exceptions import SchemaError

    if _format_checker is None:
        _format_checker = jsonschema.FormatChecker()
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ParamValidationError(f"its schema is not valid JSON Schema: {exc.message}") from None
    return cls(schema, format_checker=_format_checker)


#: Longest rule description kept: jsonschema quotes the whole value, which a conf may make huge.
MAX_PROBLEM_LENGTH = 500


def _describe(error: Any) -> str:
    """jsonschema's message for one error, with where in the value it is when not at the top."""
    message = error.message
    if len(message) > MAX_PROBLEM_LENGTH:
        message = message[:MAX_PROBLEM_LENGTH] + "..."
    path = "".join(f"[{step!r}]" for step in error.absolute_path)
    return f"{message} (at {path})" if path else message


def validate_value(value: Any, schema: Mapping[str, Any]) -> None:
    """Raise :class:`ParamValidationError` unless ``value`` is valid under ``schema``."""
    if not schema:
        return
    from jsonschema.exceptions import best_match

    error = best_match(_validator(schema).iter_errors(value))
    if error is not None:
        raise ParamValidationError(_describe(error))


class Param:
    """A default value and the JSON Schema that every value of the param must satisfy.

    :param default: the value used when a run's conf does not give one; without it the
        param is required.
    :param description: help text shown beside the param.
    :param schema: JSON Schema keywords (``type="integer"``, ``minimum=0``,
        ``enum=[...]``, ``title=...`` ...); or one ``schema={...}`` dict holding them.
    """

    def __init__(self, default: Any = NOTSET, description: str | None = None, **schema: Any):
        self.value: Any = default
        self.description = description
        self.schema: dict[str, Any] = dict(schema.pop("schema")) if "schema" in schema else schema

    def __copy__(self) -> "Param":
        return Param(self.value, self.description, schema=self.schema)

    def __repr__(self) -> str:
        parts = [] if self.value is NOTSET else [repr(self.value)]
        parts += [f"{key}={value!r}" for key, value in self.schema.items()]
        return f"Param({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Param):
            return NotImplemented
        return (self.value, self.description, self.schema) == (other.value, other.description, other.schema)

    @property
    def has_value(self) -> bool:
        """Whether the param has a default other than None."""
        return self.value is not NOTSET and self.value is not None

    def resolve(self, value: Any = NOTSET, suppress_exception: bool = False) -> Any:
        """``value`` (or the default when not given), checked against the schema.

        Raises :class:`ParamValidationError` when it breaks the schema or there is no
        value at all; with ``suppress_exception`` returns None instead. The Param itself
        is left unchanged (Airflow stores the value; a shared DAG object must not).
        """
        final = self.value if value is NOTSET else value
        try:
            if final is NOTSET:
                raise ParamValidationError(REQUIRED_PROBLEM)
            validate_value(final, self.schema)
        except ParamValidationError:
            if suppress_exception:
                return None
            raise
        return final

    def check_schema(self) -> None:
        """Raise :class:`ParamValidationError` if the schema is not valid JSON Schema."""
        if self.schema:
            _validator(self.schema)

    def dump(self) -> dict[str, Any]:
        """The param as a dict: ``value`` (None when it has no default), ``description``, ``schema``."""
        return {"value": None if self.value is NOTSET else self.value, "description": self.description,
                "schema": dict(self.schema)}

    def serialize(self) -> dict[str, Any]:
        """The stored form: ``default`` only when there is one, so required stays apart from None."""
        data: dict[str, Any] = {}
        if self.value is not NOTSET:
            data["default"] = self.value
        if self.description is not None:
            data["description"] = self.description
        if self.schema:
            data["schema"] = dict(self.schema)
        return data

    @classmethod
    def deserialize(cls, data: Mapping[str, Any]) -> "Param":
        """The Param :meth:`serialize` stored."""
        return cls(data.get("default", NOTSET), data.get("description"), schema=data.get("schema") or {})


class ParamsDict(MutableMapping[str, Any]):
    """A mapping of param names to :class:`Param`; reading a key gives its checked value.

    A plain value is stored as a Param without schema, and remembered as plain: set over
    a name that holds a Param (a task's value over the DAG's, a run's conf over both), a
    plain value is checked against that Param's schema at once and keeps it, while a
    Param set there replaces the old one, as in Airflow. ``items()`` and ``values()``
    give the Param objects, as Airflow's do; :meth:`validate` gives every plain value
    and :meth:`dump` the same without raising.
    """

    def __init__(self, dict_obj: Mapping[str, Any] | None = None, suppress_exception: bool = False):
        self._params: dict[str, Param] = {}
        self._plain: set[str] = set()
        self.suppress_exception = suppress_exception
        if isinstance(dict_obj, ParamsDict):
            self._params = dict(dict_obj._params)
            self._plain = set(dict_obj._plain)
            return
        for key, value in (dict_obj or {}).items():
            self._params[key] = value if isinstance(value, Param) else Param(value)
            if not isinstance(value, Param):
                self._plain.add(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, Param):
            self._params[key] = value
            self._plain.discard(key)
            return
        current = self._params.get(key)
        if current is None:
            self._params[key] = Param(value)
            self._plain.add(key)
            return
        param = Param(value, current.description, schema=current.schema)
        try:
            param.resolve(suppress_exception=self.suppress_exception)
        except ParamValidationError as exc:
            raise exc.naming(key) from None
        self._params[key] = param

    def __getitem__(self, key: str) -> Any:
        try:
            return self._params[key].resolve(suppress_exception=self.suppress_exception)
        except ParamValidationError as exc:
            raise exc.naming(key) from None

    def __delitem__(self, key: str) -> None:
        del self._params[key]
        self._plain.discard(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, key: object) -> bool:
        return key in self._params

    def __bool__(self) -> bool:
        return bool(self._params)

    def __repr__(self) -> str:
        return repr(self.dump())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ParamsDict):
            return self._params == other._params
        if isinstance(other, Mapping):
            return self.dump() == dict(other)
        return NotImplemented

    def __copy__(self) -> "ParamsDict":
        return ParamsDict(self, self.suppress_exception)

    def __deepcopy__(self, memo: dict[int, Any]) -> "ParamsDict":
        copied = ParamsDict(suppress_exception=self.suppress_exception)
        copied._params = copy.deepcopy(self._params, memo)
        copied._plain = set(self._plain)
        return copied

    def items(self):  # type: ignore[override]
        return self._params.items()

    def values(self):  # type: ignore[override]
        return self._params.values()

    def get_param(self, key: str) -> Param:
        """The :class:`Param` stored under ``key``."""
        return self._params[key]

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """As dict.update; another ParamsDict's plain values go in as values, its Params as Params."""
        if len(args) == 1 and not kwargs and isinstance(args[0], ParamsDict):
            other = args[0]
            for key, param in other._params.items():
                self[key] = param.value if key in other._plain else param
            return
        super().update(*args, **kwargs)

    @property
    def has_schemas(self) -> bool:
        """Whether any param has a schema (only then does validating import jsonschema)."""
        return any(param.schema for param in self._params.values())

    def validate(self) -> dict[str, Any]:
        """Every param's checked value; raises :class:`ParamValidationError` naming the first bad one."""
        return {key: self[key] for key in self._params}

    def dump(self) -> dict[str, Any]:
        """Every param's value, None for one that is missing or invalid; never raises."""
        return {key: param.resolve(suppress_exception=True) for key, param in self._params.items()}


# -- the three places params are checked ---------------------------------------------
def _conf_object(conf: Any) -> Mapping[str, Any]:
    """A run's conf as a mapping (None is an empty one); anything else is refused."""
    if conf is None:
        return {}
    if not isinstance(conf, Mapping):
        raise ParamValidationError(f"a run's conf must be a JSON object, not {type(conf).__name__} {conf!r}")
    return conf


def validate_run_conf(params_schema: Mapping[str, Mapping[str, Any]] | None,
                      conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """The params a run with ``conf`` would have, checked; raises :class:`ParamValidationError`.

    ``params_schema`` is a serialized DAG's ``params`` (name → :meth:`Param.serialize`
    output), so a trigger validates without importing the DAG file. Every key of
    ``conf`` goes over the defaults, declared or not, as Airflow's ``create_dagrun``
    does; a declared one must satisfy its schema, and a required param must be in it.
    """
    params = ParamsDict({name: Param.deserialize(entry) for name, entry in (params_schema or {}).items()})
    params.update(_conf_object(conf))
    return params.validate()


def resolve_params(dag: Any, task: Any, conf: Mapping[str, Any] | None, *,
                   conf_overrides: bool = True) -> dict[str, Any]:
    """What a try sees as ``context["params"]``: plain values, each Param checked.

    The DAG's params, then the task's over them, then (when ``conf_overrides``, which is
    ``[core] dag_run_conf_overrides_params``) every key of the run's ``conf`` over those,
    declared or not, as Airflow 2.x merges them. Raises :class:`ParamValidationError`
    naming the param and the rule. With no schema anywhere it never imports jsonschema.
    """
    params = ParamsDict()
    for owner in (dag, task):
        declared = getattr(owner, "params", None)
        if declared:
            params.update(ParamsDict(declared))
    if conf_overrides:
        params.update(_conf_object(conf))
    return params.validate()


def check_dag_params(dag: Any) -> None:
    """Raise :class:`~crossdock.dag.exceptions.DagDefinitionError` for params no run could use.

    Called where DAG files are parsed (not where a worker loads one, so tries do not pay
    for jsonschema): every schema must be JSON Schema; a task's plain value over a DAG
    Param must satisfy that Param's schema; and a DAG with a schedule must have a valid
    default for every param, DAG's and tasks', because its scheduled runs carry no conf.
    That is Airflow 2.8+'s rule; a DAG with ``schedule=None`` may leave params required.
    """
    from crossdock.dag.exceptions import DagDefinitionError

    dag_params = ParamsDict(getattr(dag, "params", None) or {})
    owners: list[tuple[str, ParamsDict]] = [(f"DAG {dag.dag_id!r}", dag_params)]
    for task in dag.tasks:
        declared = getattr(task, "params", None)
        if not declared:
            continue
        merged = ParamsDict(dag_params)
        where = f"DAG {dag.dag_id!r}, task {task.task_id!r}"
        try:
            merged.update(ParamsDict(declared))
        except ParamValidationError as exc:
            raise DagDefinitionError(f"{where}: {exc}") from None
        owners.append((where, merged))
    for where, params in owners:
        if not params.has_schemas and dag.schedule is None:
            continue
        for key, param in params.items():
            try:
                param.check_schema()
            except ParamValidationError as exc:
                raise DagDefinitionError(f"{where}: {exc.naming(key)}") from None
        if dag.schedule is not None:
            try:
                params.validate()
            except ParamValidationError as exc:
                raise DagDefinitionError(
                    f"{where}: {exc}; a DAG with a schedule needs a valid default for every param, "
                    f"since its scheduled runs have no conf (use schedule=None for a DAG that must "
                    f"be triggered with values)") from None
