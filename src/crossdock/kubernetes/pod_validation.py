"""The value rules of a Kubernetes pod that are easy to break from Python: one module, three users.

A ``pod_override`` written in a DAG file reaches an API server only when its task runs,
so a value the server refuses (``memory: "lots"``, a label value ``1`` instead of ``"1"``)
would surface late, as a failed try. These checks run at DAG parse time (an import error
naming the task and field), in the executor before a pod is created (the try fails with
the reason), and in the local pod runtime's API server, which answers as kube-apiserver
v1.20 does:

* a value of the wrong JSON type (an integer label, annotation or env value) or a quantity
  that does not parse is a **decode** error there: ``400 BadRequest``, "Pod in version "v1"
  cannot be handled as a Pod: …";
* a string that breaks a rule (label syntax, negative quantity, request above limit, env
  name) is a **validation** error: ``422 Invalid`` with one cause per field.

Numbers are fine as quantities (``cpu: 0.5``), as the real server accepts them. The rules
are Kubernetes' own: label values ``(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?`` up to 63
characters, keys qualified names (optional DNS-1123 subdomain prefix + ``/``), quantities
by the official client's :func:`kubernetes.utils.quantity.parse_quantity` after the API's
own pattern. This module depends on nothing of crossdock, so the local runtime uses it too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Iterator, Mapping

QUANTITY_PATTERN = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_MESSAGE = ("quantities must match the regular expression "
                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
LABEL_VALUE_PATTERN = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
NAME_PART_PATTERN = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS1123_SUBDOMAIN_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME_PATTERN = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MAX_LABEL_VALUE_LENGTH = 63
MAX_NAME_PART_LENGTH = 63
MAX_PREFIX_LENGTH = 253
MAX_ANNOTATIONS_BYTES = 256 * 1024

LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
NAME_PART_MESSAGE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
PREFIX_MESSAGE = (
    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
ENV_NAME_MESSAGE = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used "
    "for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")

#: Go types the real decoder names in its message, by where the bad value sits.
_DECODE_PATH = {
    "labels": "v1.Pod.Spec: v1.PodSpec.ObjectMeta: v1.ObjectMeta.Labels",
    "annotations": "v1.Pod.Spec: v1.PodSpec.ObjectMeta: v1.ObjectMeta.Annotations",
    "env": "v1.Pod.Spec: v1.PodSpec.Containers: []v1.Container: v1.Container.Env: []v1.EnvVar: v1.EnvVar.Value",
    "limits": ("v1.Pod.Spec: v1.PodSpec.Containers: []v1.Container: v1.Container.Resources: "
               "v1.ResourceRequirements.Limits: unmarshalerDecoder"),
    "requests": ("v1.Pod.Spec: v1.PodSpec.Containers: []v1.Container: v1.Container.Resources: "
                 "v1.ResourceRequirements.Requests: unmarshalerDecoder"),
}


@dataclass(frozen=True)
class Problem:
    """One value the API server would refuse.

    :param field: the field as the API server names it in a 422 cause (``metadata.labels``,
        ``spec.containers[0].resources.limits[memory]``).
    :param message: the cause's message, worded as the server words it.
    :param decode: True when the server refuses it while decoding (400), not validating (422).
    :param where: the exact place for a person (``metadata.labels['team']``).
    :param decode_path: for decode problems, the Go type path the server's message names.
    :param decode_detail: for decode problems, the decoder's own complaint.
    """

    field: str
    message: str
    decode: bool = False
    where: str = ""
    decode_path: str = ""
    decode_detail: str = ""

    def decode_message(self) -> str:
        """The 400 message kube-apiserver gives for this value (its leading part)."""
        return f'Pod in version "v1" cannot be handled as a Pod: {self.decode_path}: {self.decode_detail}'

    def describe(self) -> str:
        """``<place>: <what is wrong>`` for import errors and failed tries."""
        return f"{self.where or self.field}: {self.message}"


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__)


def _not_a_string(value: Any) -> str:
    return f"must be a string, not {_type_name(value)} {value!r} (write it in quotes)"


def _read_string_detail(value: Any) -> str:
    """What the Go decoder says meeting a non-string: it names the first byte it found."""
    return f'ReadString: expects " or n, but found {json.dumps(value)[:1]}'


def parse_quantity_value(value: Any) -> Decimal:
    """The amount of a quantity (a string or a number); ValueError when the API would not decode it."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(QUANTITY_MESSAGE)
    if isinstance(value, str) and not QUANTITY_PATTERN.match(value):
        raise ValueError(QUANTITY_MESSAGE)
    from kubernetes.utils.quantity import parse_quantity  # the client's own parser, imported when needed

    try:
        amount = parse_quantity(value)
    except (ValueError, TypeError, ArithmeticError):
        raise ValueError(QUANTITY_MESSAGE) from None
    if not amount.is_finite():
        raise ValueError(QUANTITY_MESSAGE)
    return amount


_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
#: Quantities keep nine decimal places; finer amounts are rounded up, as the API rounds them.
_NANO = Decimal(10) ** 9


def canonical_quantity(value: Any) -> str:
    """A quantity as the API server stores and returns it: ``0.5`` → ``"500m"``, ``"1024Mi"`` → ``"1Gi"``.

    The form follows the suffix written: binary (``Ki``…) stays binary when the amount is a
    whole number of at least 1024, an exponent stays an exponent, anything else becomes the
    decimal suffix with the smallest whole mantissa. ValueError when it does not parse.
    """
    amount = parse_quantity_value(value)
    match = QUANTITY_PATTERN.match(value) if isinstance(value, str) else None
    suffix = match.group(2) if match else ""
    if suffix in _BINARY_SUFFIXES[1:] and abs(amount) >= 1024 and amount == amount.to_integral_value():
        whole, power = int(amount), 0
        while power < len(_BINARY_SUFFIXES) - 1 and whole % 1024 == 0:
            whole //= 1024
            power += 1
        return f"{whole}{_BINARY_SUFFIXES[power]}"
    mantissa = int((amount * _NANO).to_integral_value(rounding=ROUND_CEILING))
    if mantissa == 0:
        return "0"
    exponent = -9
    while exponent < 18 and mantissa % 1000 == 0:
        mantissa //= 1000
        exponent += 3
    if suffix[:1] in ("e", "E"):
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return f"{mantissa}{_DECIMAL_SUFFIXES[exponent]}"


def qualified_name_problems(key: Any) -> list[str]:
    """Why ``key`` is not a qualified name (label and annotation keys), empty when it is."""
    if not isinstance(key, str):
        return [_not_a_string(key)]
    prefix, slash, name = key.rpartition("/")
    if not slash:
        prefix, name = "", key
    problems = []
    if slash and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix:
        if len(prefix) > MAX_PREFIX_LENGTH:
            problems.append(f"prefix part must be no more than {MAX_PREFIX_LENGTH} characters")
        if not DNS1123_SUBDOMAIN_PATTERN.match(prefix):
            problems.append(PREFIX_MESSAGE)
    if not name:
        problems.append("name part must be non-empty")
    else:
        if len(name) > MAX_NAME_PART_LENGTH:
            problems.append(f"name part must be no more than {MAX_NAME_PART_LENGTH} characters")
        if not NAME_PART_PATTERN.match(name):
            problems.append(NAME_PART_MESSAGE)
    return problems


def label_value_problems(value: str) -> list[str]:
    problems = []
    if len(value) > MAX_LABEL_VALUE_LENGTH:
        problems.append(f"must be no more than {MAX_LABEL_VALUE_LENGTH} characters")
    if not LABEL_VALUE_PATTERN.match(value):
        problems.append(LABEL_VALUE_MESSAGE)
    return problems


def _metadata_problems(meta: Mapping[str, Any]) -> Iterator[Problem]:
    for kind in ("labels", "annotations"):
        values = meta.get(kind)
        if not isinstance(values, Mapping):
            continue
        field = f"metadata.{kind}"
        for key, value in values.items():
            where = f"{field}[{key!r}]"
            for message in qualified_name_problems(key):
                yield Problem(field, f"Invalid value: {_shown(key)}: {message}", where=where)
            if value is not None and not isinstance(value, str):
                yield Problem(field, _not_a_string(value), decode=True, where=where, decode_path=_DECODE_PATH[kind],
                              decode_detail=_read_string_detail(value))
            elif kind == "labels" and value is not None:
                for message in label_value_problems(value):
                    yield Problem(field, f"Invalid value: {_shown(value)}: {message}", where=where)
        if kind == "annotations":
            size = sum(len(str(k)) + len(str(v)) for k, v in values.items())
            if size > MAX_ANNOTATIONS_BYTES:
                yield Problem(field, f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes", where=field)


def _resource_problems(prefix: str, resources: Mapping[str, Any]) -> Iterator[Problem]:
    amounts: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    for kind in ("limits", "requests"):
        values = resources.get(kind)
        if not isinstance(values, Mapping):
            continue
        for name, value in values.items():
            field = f"{prefix}.resources.{kind}[{name}]"
            try:
                amount = parse_quantity_value(value)
            except ValueError as exc:
                yield Problem(field, f"Invalid value: {_shown(value)}: {exc}", decode=True, where=field,
                              decode_path=_DECODE_PATH[kind], decode_detail=str(exc))
                continue
            if amount < 0:
                yield Problem(field, f"Invalid value: {_shown(value)}: must be greater than or equal to 0",
                              where=field)
                continue
            amounts[kind][name] = amount
    limits, requests = amounts["limits"], amounts["requests"]
    for name, request in requests.items():
        if name in limits and request > limits[name]:
            shown = _shown(resources["requests"][name])
            yield Problem(f"{prefix}.resources.requests",
                          f"Invalid value: {shown}: must be less than or equal to {name} limit",
                          where=f"{prefix}.resources.requests[{name}]")


def _mapping_items(value: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(index, item) of each object in ``value`` when it is a list; anything else has nothing to check here."""
    if isinstance(value, list):
        yield from ((index, item) for index, item in enumerate(value) if isinstance(item, Mapping))


def _env_problems(prefix: str, env: Any) -> Iterator[Problem]:
    for index, item in _mapping_items(env):
        field = f"{prefix}.env[{index}]"
        name = item.get("name")
        if isinstance(name, str) and name and not ENV_NAME_PATTERN.match(name):
            yield Problem(f"{field}.name", f"Invalid value: {_shown(name)}: {ENV_NAME_MESSAGE}")
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            yield Problem(f"{field}.value", _not_a_string(value), decode=True, where=f"{field}.value ({name})",
                          decode_path=_DECODE_PATH["env"], decode_detail=_read_string_detail(value))


def pod_problems(pod: Mapping[str, Any]) -> list[Problem]:
    """Every value of ``pod`` (an API dict, camelCase keys) that an API server would refuse."""
    problems: list[Problem] = []
    meta = pod.get("metadata")
    if isinstance(meta, Mapping):
        problems.extend(_metadata_problems(meta))
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return problems
    for group in ("initContainers", "containers"):
        for index, container in _mapping_items(spec.get(group)):
            prefix = f"spec.{group}[{index}]"
            resources = container.get("resources")
            if isinstance(resources, Mapping):
                problems.extend(_resource_problems(prefix, resources))
            problems.extend(_env_problems(prefix, container.get("env")))
    return problems


def describe_problems(problems: list[Problem]) -> str:
    """One line per problem, for a person."""
    return "; ".join(problem.describe() for problem in problems)
