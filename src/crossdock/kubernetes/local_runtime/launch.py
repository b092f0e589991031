"""From a pod spec to the exact local process the node agent starts: argv, env, cwd, limits.

There are no images here, so the container's ``command`` is run on the host. Anything in a
spec that cannot be honoured that way is refused with the reason a kubelet would give
(``CreateContainerConfigError`` plus a message naming the field), never ignored silently.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import pwd
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from kubernetes.utils.quantity import parse_quantity

from crossdock.exceptions import CrossdockError

#: The container a pod's main process comes from; the first container if none is named so.
BASE_CONTAINER = "base"
#: Without a cpu limit the process keeps the agent's priority; below one core it is niced.
MAX_NICE = 19

#: The agent's variables a pod's process starts with, as a container gets PATH and the
#: locale from its image; nothing else of the agent's environment (its credentials,
#: configuration overrides, tokens) ever reaches a pod.
BASE_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class ContainerConfigError(CrossdockError):
    """The spec asks for something this runtime cannot provide (``CreateContainerConfigError``)."""

    reason = "CreateContainerConfigError"


class ImagePullError(CrossdockError):
    """The image is configured as unpullable (``ErrImagePull``); the pod stays Pending."""

    reason = "ErrImagePull"


@dataclass
class LaunchPlan:
    """Everything the per-pod shim needs, written to the pod's folder as JSON."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    memory_limit_bytes: int | None
    nice: int
    log_path: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: The container's volume mounts and how to get their namespace (``root``/``user``),
    #: filled in by :func:`crossdock.kubernetes.local_runtime.volumes.attach`.
    mounts: list[dict[str, Any]] = field(default_factory=list)
    mount_namespace: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def pick_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == BASE_CONTAINER:
            return container
    return containers[0] if containers else {"name": BASE_CONTAINER}  # fails as "no command"


def check_image(image: str, reject_patterns: list[str]) -> None:
    for pattern in reject_patterns:
        if fnmatch.fnmatchcase(image, pattern):
            raise ImagePullError(f'Failed to pull image "{image}": rpc error: code = NotFound desc = '
                                 f'failed to pull and unpack image "{image}": not found')


def _quantity(container: dict[str, Any], kind: str, resource: str) -> Any:
    """A resource amount, or the config error a kubelet would give for one it cannot read."""
    amount = ((container.get("resources") or {}).get(kind) or {})[resource]
    try:
        return parse_quantity(amount)
    except (ValueError, TypeError, ArithmeticError):
        raise ContainerConfigError(f'container "{container.get("name")}": resources.{kind}.{resource}: '
                                   f'invalid quantity "{amount}"') from None


def memory_limit(container: dict[str, Any]) -> int | None:
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" not in limits:
        return None
    return int(_quantity(container, "limits", "memory"))


def nice_for(container: dict[str, Any]) -> int:
    """A cpu limit is a scheduling weight here, not a cap: below one core, lower priority."""
    limits = (container.get("resources") or {}).get("limits") or {}
    if "cpu" not in limits:
        return 0
    cores = float(_quantity(container, "limits", "cpu"))
    if cores >= 1:
        return 0
    return min(MAX_NICE, max(1, round((1 - cores) * 10)))


def expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` expansion as the kubelet does it: unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, text)


def base_environment() -> dict[str, str]:
    """PATH (the agent's, else the usual default), HOME of the user pods run as, locale and TZ."""
    env = {name: os.environ[name] for name in BASE_ENV_NAMES if os.environ.get(name)}
    env.setdefault("PATH", DEFAULT_PATH)
    try:
        env["HOME"] = pwd.getpwuid(os.getuid()).pw_dir or "/"
    except KeyError:
        env["HOME"] = "/"
    return env


SecretReader = Callable[[str, str, str], dict[str, str] | None]


def _field_ref(pod: dict[str, Any], path: str, node_ip: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", "") or "",
        "spec.serviceAccountName": spec.get("serviceAccountName", "") or "",
        "status.hostIP": node_ip, "status.podIP": node_ip, "status.podIPs": node_ip,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise ContainerConfigError(f'unsupported fieldRef fieldPath "{path}"')


def _resource_ref(container: dict[str, Any], ref: dict[str, Any]) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    amounts = (container.get("resources") or {}).get(kind) or {}
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerConfigError(f'unsupported resourceFieldRef resource "{resource}"')
    if name not in amounts:
        return "0"
    try:
        divisor = parse_quantity(ref.get("divisor") or "1")
    except (ValueError, TypeError, ArithmeticError):
        raise ContainerConfigError(f'resourceFieldRef "{resource}": invalid divisor "{ref.get("divisor")}"') from None
    value = _quantity(container, kind, name) / divisor
    return str(int(-(-value // 1)))  # ceiling, as the kubelet rounds up


def build_env(pod: dict[str, Any], container: dict[str, Any], *, read_source: SecretReader,
              node_ip: str) -> dict[str, str]:
    """The base environment, then ``envFrom`` and ``env`` in order, later entries winning."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env = base_environment()
    env["HOSTNAME"] = (pod.get("metadata") or {}).get("name", "")
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            data = read_source(kind, namespace, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
            env.update({prefix + key: value for key, value in data.items()})
    for item in container.get("env") or []:
        name = item.get("name", "")
        if "valueFrom" not in item or item.get("valueFrom") is None:
            value = item.get("value")
            if value is not None and not isinstance(value, str):
                raise ContainerConfigError(f'env "{name}": value must be a string, not {type(value).__name__}')
            env[name] = expand(value or "", env)
            continue
        source = item["valueFrom"]
        if source.get("fieldRef"):
            env[name] = _field_ref(pod, source["fieldRef"].get("fieldPath", ""), node_ip)
        elif source.get("resourceFieldRef"):
            env[name] = _resource_ref(container, source["resourceFieldRef"])
        elif source.get("configMapKeyRef") or source.get("secretKeyRef"):
            kind, ref = (("ConfigMap", source["configMapKeyRef"]) if source.get("configMapKeyRef")
                         else ("Secret", source["secretKeyRef"]))
            data = read_source(kind, namespace, ref.get("name", ""))
            if data is None or ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                if data is None:
                    raise ContainerConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
                raise ContainerConfigError(f"couldn't find key {ref.get('key')} in {kind} "
                                           f"{namespace}/{ref.get('name', '')}")
            env[name] = data[ref["key"]]
        else:
            kinds = ", ".join(sorted(k for k, v in source.items() if v is not None)) or "empty"
            raise ContainerConfigError(f'env "{name}": valueFrom source {kinds} is not supported by the local runtime')
    return env


def decode_secret_data(data: dict[str, str] | None) -> dict[str, str]:
    return {key: base64.b64decode(value).decode("utf-8", "replace") for key, value in (data or {}).items()}


def build_plan(pod: dict[str, Any], container: dict[str, Any], *, reject_patterns: list[str],
               read_source: SecretReader, log_path: str, node_ip: str = "127.0.0.1") -> LaunchPlan:
    """The process to start, or :class:`ImagePullError` / :class:`ContainerConfigError`."""
    check_image(container.get("image") or "", reject_patterns)
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        raise ContainerConfigError(
            f'container "{container.get("name")}" has no command: images are not run by the local runtime, '
            f"so the command must be given in the pod spec")
    if container.get("volumeDevices"):  # volumeMounts are volumes.attach's to plan
        raise ContainerConfigError(f'container "{container.get("name")}": volumeDevices '
                                   f"not supported by the local runtime")
    env = build_env(pod, container, read_source=read_source, node_ip=node_ip)
    argv = [expand(part, env) for part in command + args]
    return LaunchPlan(argv=argv, env=env, cwd=container.get("workingDir") or None,
                      memory_limit_bytes=memory_limit(container), nice=nice_for(container), log_path=log_path)
