"""From a task try to the pod that runs it: template, ``pod_override``, and the executor's own fields.

A worker pod is built in three layers, later layers winning:

1. the pod template (``[kubernetes_executor] pod_template_file``, or :data:`DEFAULT_POD_TEMPLATE`),
   with the configured image and namespace;
2. the task's ``executor_config["pod_override"]``, a ``kubernetes.client.V1Pod`` or a plain
   dict in the API's shape (camelCase or the client's snake_case keys both accepted),
   whose values are checked as an API server checks them (:mod:`.pod_validation`);
3. what the executor must control: the ``base`` container's command, the labels and
   annotations that map the pod back to its task, the pod name, ``restartPolicy: Never``.

Merge rules (layer 2 onto layer 1), the same for every field of a pod:

* dicts are merged key by key, so overriding ``resources.limits`` keeps the template's
  ``resources.requests``, and labels/annotations are merged;
* containers are matched **by name**: the override's ``base`` merges into the task's
  container, a container of another name merges into the template's container of that
  name or is appended as a sidecar;
* the named lists ``env``, ``volumes``, ``volumeMounts``, ``initContainers``, ``envFrom``,
  ``ports``, ``imagePullSecrets`` and ``tolerations`` are appended to; an entry with the
  same name (``mountPath`` for volume mounts) as a template entry replaces it in place;
* every other value (strings, numbers, other lists such as ``command``) is replaced.

Everything here works on API dicts (what ``kubectl get -o json`` shows) because that is
what the API server takes and what a template file holds; client models are converted
once, at the edge, by :func:`normalize_pod`.
"""

from __future__ import annotations

import copy
import hashlib
import re
import secrets
import string
from pathlib import Path
from typing import Any, Mapping

import yaml

from crossdock.exceptions import CrossdockError
from crossdock.kubernetes.pod_validation import describe_problems, pod_problems
from crossdock.models.taskinstancekey import TaskInstanceKey

#: The container that runs the task command; a pod_override addresses it by this name.
BASE_CONTAINER_NAME = "base"
#: The pod every worker starts from when no template file is configured.
DEFAULT_POD_TEMPLATE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {},
    "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": BASE_CONTAINER_NAME}],
    },
}

#: Label naming the scheduler job that launched (or adopted) the pod; watchers select on it.
WORKER_LABEL = "crossdock-worker"
#: Label every pod of the KubernetesExecutor carries, whichever scheduler launched it.
EXECUTOR_LABEL = "kubernetes_executor"
#: Annotation prefix of the raw ids; annotations are the truth about which try a pod runs.
ANNOTATION_PREFIX = "crossdock.io/"
KEY_ANNOTATIONS = ("dag_id", "task_id", "run_id", "try_number", "map_index")

MAX_LABEL_VALUE_LENGTH = 63
MAX_POD_NAME_LENGTH = 63
HASH_SUFFIX_LENGTH = 8
POD_NAME_SUFFIX_LENGTH = 8
_POD_NAME_ALPHABET = string.ascii_lowercase + string.digits
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")

#: List fields that are appended to rather than replaced, and the key that names an entry.
NAMED_LISTS: dict[str, str | None] = {
    "env": "name",
    "envFrom": None,
    "volumes": "name",
    "volumeMounts": "mountPath",
    "initContainers": "name",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "tolerations": None,
}


#: (model, attribute) pairs holding resource quantities, which may be written as numbers.
QUANTITY_FIELDS = frozenset({
    ("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"), ("V1PodSpec", "overhead"),
    ("V1EmptyDirVolumeSource", "size_limit"), ("V1ResourceFieldSelector", "divisor"),
})


class PodOverrideError(CrossdockError, ValueError):
    """A ``pod_override`` (or pod template) that is not a valid pod; the message says what is wrong."""


# -- label and name safety ---------------------------------------------------------------
def _short_hash(value: str) -> str:
    return hashlib.sha1(value.encode("utf-8")).hexdigest()[:HASH_SUFFIX_LENGTH]


def make_safe_label_value(value: Any) -> str:
    """``value`` as a valid label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends.

    A value that had to change gets a hash of the original as suffix, so two ids that
    clean up to the same text still get different labels. The raw id is kept in an
    annotation; a label is only for selecting.
    """
    text = str(value)
    if len(text) <= MAX_LABEL_VALUE_LENGTH and _LABEL_VALUE.match(text):
        return text
    cleaned = _LABEL_UNSAFE.sub("_", text)
    keep = MAX_LABEL_VALUE_LENGTH - HASH_SUFFIX_LENGTH - 1
    cleaned = cleaned[:keep].strip("_.-")
    suffix = _short_hash(text)
    return f"{cleaned}-{suffix}" if cleaned else suffix


def make_pod_name(*parts: str, suffix: str | None = None) -> str:
    """A DNS-1123 pod name of at most 63 characters from ``parts``, ending in a random suffix."""
    suffix = suffix or "".join(secrets.choice(_POD_NAME_ALPHABET) for _ in range(POD_NAME_SUFFIX_LENGTH))
    stem = _NAME_UNSAFE.sub("-", "-".join(parts).lower())
    stem = re.sub(r"-{2,}", "-", stem)
    stem = stem[:MAX_POD_NAME_LENGTH - len(suffix) - 1].strip("-")
    return f"{stem}-{suffix}" if stem else f"pod-{suffix}"


# -- from client models or loose dicts to checked API dicts ---------------------------------
def _models():
    from kubernetes.client import models

    return models


def _describe(value: Any) -> str:
    return type(value).__name__


def _check_scalar(value: Any, type_name: str, where: str, *, quantity: bool = False) -> Any:
    if type_name == "str":
        if isinstance(value, str):
            return value
        if quantity and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # quantities written as numbers (cpu=0.5), which the API accepts too
        # An API server refuses a number where a string belongs (a label value 1, an env value 5).
        raise PodOverrideError(f"{where} must be a string, not {_describe(value)} {value!r}")
    if type_name == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise PodOverrideError(f"{where} must be an integer, not {_describe(value)} {value!r}")
    if type_name == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise PodOverrideError(f"{where} must be a number, not {_describe(value)} {value!r}")
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        raise PodOverrideError(f"{where} must be true or false, not {_describe(value)} {value!r}")
    if type_name == "datetime":
        return value if isinstance(value, str) else str(value)
    return value  # "object" (int-or-string and the like) and bytes: the server judges


def _normalize(value: Any, type_name: str, where: str, *, quantity: bool = False) -> Any:
    if value is None:
        return None
    if type_name.startswith("List["):
        if not isinstance(value, (list, tuple)):
            raise PodOverrideError(f"{where} must be a list, not {_describe(value)} {value!r}")
        inner = type_name[5:-1]
        return [_normalize(item, inner, f"{where}[{index}]") for index, item in enumerate(value)]
    if type_name.startswith("Dict["):
        if not isinstance(value, Mapping):
            raise PodOverrideError(f"{where} must be a mapping, not {_describe(value)} {value!r}")
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return {str(key): _normalize(item, inner, f"{where}.{key}", quantity=quantity) for key, item in value.items()}
    model = getattr(_models(), type_name, None)
    if model is None or not hasattr(model, "openapi_types"):
        return _check_scalar(value, type_name, where, quantity=quantity)
    if isinstance(value, model):
        from kubernetes.client import ApiClient

        value = ApiClient().sanitize_for_serialization(value)
    elif type(value).__module__.startswith("kubernetes."):
        raise PodOverrideError(f"{where} must be a {type_name}, not a {_describe(value)}")
    if not isinstance(value, Mapping):
        raise PodOverrideError(f"{where} must be a mapping ({type_name}), not {_describe(value)} {value!r}")
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    out: dict[str, Any] = {}
    for key, item in value.items():
        attr = by_json.get(key) or (key if key in model.openapi_types else None)
        if attr is None:
            known = ", ".join(sorted(by_json))
            raise PodOverrideError(f"{where} has unknown field {key!r} (a {type_name} has: {known})")
        json_key = model.attribute_map[attr]
        normalized = _normalize(item, model.openapi_types[attr], f"{where}.{json_key}",
                                quantity=(type_name, attr) in QUANTITY_FIELDS)
        if normalized is not None:
            out[json_key] = normalized
    return out


def normalize_pod(value: Any, *, where: str = "pod_override") -> dict[str, Any]:
    """A ``V1Pod`` or pod dict as a checked API dict (camelCase keys, JSON values).

    Raises :class:`PodOverrideError` naming the field when ``value`` is not a pod: an
    unknown field (a typo such as ``contianers``), a wrong type, or a container without
    a name (it could not be matched with the template's).
    """
    if value is None:
        return {}
    models = _models()
    if type(value).__module__.startswith("kubernetes.") and not isinstance(value, models.V1Pod):
        raise PodOverrideError(f"{where} must be a V1Pod or a dict, not a {_describe(value)}")
    if not isinstance(value, (Mapping, models.V1Pod)):
        raise PodOverrideError(f"{where} must be a V1Pod or a dict, not {_describe(value)} {value!r}")
    pod = _normalize(value, "V1Pod", where)
    if pod.get("kind") not in (None, "Pod"):
        raise PodOverrideError(f"{where}.kind must be Pod, not {pod['kind']!r}")
    spec = pod.get("spec") or {}
    for field in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(field) or []):
            if not container.get("name"):
                raise PodOverrideError(f"{where}.spec.{field}[{index}] has no name: containers are "
                                       f"matched by name ('{BASE_CONTAINER_NAME}' is the task's)")
    return pod


def refuse_invalid_values(pod: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`PodOverrideError` for values an API server refuses (bad quantity, label, env)."""
    problems = pod_problems(pod)
    if problems:
        raise PodOverrideError(f"{where}: {describe_problems(problems)}")


def check_pod_override(value: Any, *, where: str = "pod_override") -> dict[str, Any]:
    """``value`` as a checked API dict, or :class:`PodOverrideError` naming the field (parse time)."""
    pod = normalize_pod(value, where=where)
    refuse_invalid_values(pod, where=where)
    return pod


def load_pod_template(path: str | Path | None) -> dict[str, Any]:
    """The template pod from a YAML/JSON file, checked; :data:`DEFAULT_POD_TEMPLATE` when ``path`` is empty."""
    if not path:
        return copy.deepcopy(DEFAULT_POD_TEMPLATE)
    file = Path(path).expanduser()
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PodOverrideError(f"cannot read pod template file {file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PodOverrideError(f"pod template file {file} is not valid YAML: {exc}") from None
    pod = check_pod_override(document, where=f"pod template {file}")
    if not (pod.get("spec") or {}).get("containers"):
        raise PodOverrideError(f"pod template {file} has no containers; it needs at least "
                               f"the '{BASE_CONTAINER_NAME}' container")
    return pod


# -- merging ----------------------------------------------------------------------------------
def _merge_named_list(base: list[Any], extra: list[Any], key: str | None) -> list[Any]:
    merged = list(base)
    for item in extra:
        if key is not None and isinstance(item, Mapping) and item.get(key) is not None:
            for index, existing in enumerate(merged):
                if isinstance(existing, Mapping) and existing.get(key) == item.get(key):
                    merged[index] = merge_values(existing, item)
                    break
            else:
                merged.append(copy.deepcopy(item))
        else:
            merged.append(copy.deepcopy(item))
    return merged


def _merge_containers(base: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged = [copy.deepcopy(container) for container in base]
    for container in extra:
        for index, existing in enumerate(merged):
            if existing.get("name") == container.get("name"):
                merged[index] = merge_values(existing, container)
                break
        else:
            merged.append(copy.deepcopy(container))
    return merged


def merge_values(base: Any, extra: Any, field: str | None = None) -> Any:
    """``extra`` merged onto ``base`` by the module's rules; neither argument is changed."""
    if extra is None:
        return copy.deepcopy(base)
    if isinstance(base, Mapping) and isinstance(extra, Mapping):
        out = {key: copy.deepcopy(value) for key, value in base.items()}
        for key, value in extra.items():
            out[key] = merge_values(base[key], value, key) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(extra, list):
        if field == "containers":
            return _merge_containers(base, extra)
        if field in NAMED_LISTS:
            return _merge_named_list(base, extra, NAMED_LISTS[field])
    return copy.deepcopy(extra)


def merge_pods(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``override`` (an API dict) merged onto ``base`` (an API dict)."""
    return merge_values(dict(base), dict(override or {}))


# -- the worker pod ------------------------------------------------------------------------
def key_labels(key: TaskInstanceKey) -> dict[str, str]:
    """The label-safe ids of a try (select with them; never read ids back from them)."""
    labels = {"dag_id": make_safe_label_value(key.dag_id), "task_id": make_safe_label_value(key.task_id),
              "run_id": make_safe_label_value(key.run_id), "try_number": str(key.try_number)}
    if key.map_index is not None and key.map_index >= 0:
        labels["map_index"] = str(key.map_index)
    return labels


def key_annotations(key: TaskInstanceKey) -> dict[str, str]:
    return {f"{ANNOTATION_PREFIX}{name}": str(getattr(key, name)) for name in KEY_ANNOTATIONS}


def annotations_to_key(annotations: Mapping[str, str] | None) -> TaskInstanceKey | None:
    """The try a pod runs, from its annotations; None when the pod is not one of ours."""
    annotations = annotations or {}
    try:
        values = {name: annotations[f"{ANNOTATION_PREFIX}{name}"] for name in KEY_ANNOTATIONS}
        return TaskInstanceKey(values["dag_id"], values["task_id"], values["run_id"],
                               int(values["try_number"]), int(values["map_index"]))
    except (KeyError, ValueError):
        return None


def task_command_fields(container: Mapping[str, Any], command: list[str]) -> dict[str, list[str]]:
    """``command``/``args`` of the base container so the pod runs exactly ``command``.

    A template that gives the base container an entrypoint (``command``, e.g. an init
    wrapper) keeps it and gets the task command as ``args``; otherwise the task command's
    first word is the command and the rest its args.
    """
    if container.get("command"):
        return {"command": list(container["command"]), "args": list(command)}
    return {"command": list(command[:1]), "args": list(command[1:])}


def construct_pod(*, key: TaskInstanceKey, command: list[str], scheduler_job_id: Any,
                  template: Mapping[str, Any] | None = None, pod_override: Any = None,
                  namespace: str = "default", image: str | None = None,
                  env: Mapping[str, str] | None = None, pod_name: str | None = None) -> dict[str, Any]:
    """The pod (an API dict) that runs one try.

    :param key: the try; its ids go into labels (safe) and annotations (raw).
    :param command: the task command, run as-is by the ``base`` container.
    :param scheduler_job_id: the scheduler job that owns the pod (``crossdock-worker`` label).
    :param template: the template pod (API dict); :data:`DEFAULT_POD_TEMPLATE` when None.
    :param pod_override: a ``V1Pod`` or dict merged onto the template; raises
        :class:`PodOverrideError` when it is not a valid pod.
    :param namespace: namespace unless the override names one.
    :param image: image of the base container unless the override sets one.
    :param env: environment added to the base container before the override's.
    :param pod_name: a fixed name (tests); by default one from the ids with a random suffix.
    """
    pod = copy.deepcopy(dict(template) if template is not None else DEFAULT_POD_TEMPLATE)
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    pod.setdefault("metadata", {})
    spec = pod.setdefault("spec", {})
    containers = spec.setdefault("containers", [])
    if not any(c.get("name") == BASE_CONTAINER_NAME for c in containers):
        containers.insert(0, {"name": BASE_CONTAINER_NAME})
    base = next(c for c in containers if c.get("name") == BASE_CONTAINER_NAME)
    pod["metadata"]["namespace"] = namespace
    if image:
        base["image"] = image
    if env:
        base["env"] = _merge_named_list(base.get("env") or [], [{"name": k, "value": str(v)} for k, v in env.items()],
                                        "name")
    override = normalize_pod(pod_override)
    pod = merge_pods(pod, override)

    meta = pod["metadata"]
    meta.pop("generateName", None)
    meta.pop("resourceVersion", None)
    meta.pop("uid", None)
    meta["name"] = pod_name or make_pod_name(key.dag_id, key.task_id)
    meta["namespace"] = meta.get("namespace") or namespace
    labels = dict(meta.get("labels") or {})
    labels.update(key_labels(key))
    labels[WORKER_LABEL] = make_safe_label_value(scheduler_job_id)
    labels[EXECUTOR_LABEL] = "True"
    meta["labels"] = labels
    meta["annotations"] = {**(meta.get("annotations") or {}), **key_annotations(key)}
    spec = pod["spec"]
    spec["restartPolicy"] = "Never"  # a task try runs once; retries are the scheduler's
    base = next(c for c in spec["containers"] if c.get("name") == BASE_CONTAINER_NAME)
    base.update(task_command_fields(base, command))
    if not base.get("image"):
        raise PodOverrideError(f"container '{BASE_CONTAINER_NAME}' has no image: set "
                               f"[kubernetes_executor] worker_container_repository or an image in pod_override")
    pod.pop("status", None)
    refuse_invalid_values(pod, where="pod")
    return pod


def pod_override_of(executor_config: Any) -> Any:
    """The ``pod_override`` of an executor_config, or None; anything else there is ignored."""
    if isinstance(executor_config, Mapping):
        return executor_config.get("pod_override")
    return None
