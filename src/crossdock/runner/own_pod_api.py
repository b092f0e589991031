"""A warm pod's read of its own pod object: one list and a watch, over the Kubernetes API with urllib3.

Why not the official client here, as everywhere else: importing it (its configuration
loaders pull in OAuth, YAML, dynamic and websocket support) costs a warm pod about 0.24 s
of CPU before it can take a task, more than a whole cold try of a small task, and a pool
pays that for every pod it replaces while tries run beside it. A warm pod needs two
requests of the API, both reads of one object: ``GET pods?fieldSelector=metadata.name=X``
and the same with ``watch=1``. Those are made here with urllib3 (which the client uses
underneath) and the same credentials the client would use: the in-cluster service
account, or a kubeconfig whose user is a bearer token or a client certificate. Any other
kind of kubeconfig user (an exec plugin, an auth provider) raises
:class:`UnsupportedCredentials`, and the pod uses the official client instead.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from typing import Any, Iterator
from urllib.parse import quote

from crossdock.exceptions import CrossdockError

#: Where a pod's service account credentials are mounted, as the official client reads them.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Connect timeout of every request; a watch's read timeout is its own length plus this.
CONNECT_SECONDS = 10.0


class UnsupportedCredentials(CrossdockError):
    """The configured credentials need the official client (exec plugins, auth providers...)."""


class WatchExpired(CrossdockError):
    """The watch's resource version is too old (410): list again."""


class OwnPodApi:
    """Lists and watches one pod by name (see the module docstring)."""

    def __init__(self, *, server: str, headers: dict[str, str], context: ssl.SSLContext | None,
                 name: str, namespace: str):
        import urllib3

        self._http = urllib3.PoolManager(ssl_context=context) if context else urllib3.PoolManager()
        self._urllib3 = urllib3
        self._headers = {"Accept": "application/json", **headers}
        self._url = (f"{server.rstrip('/')}/api/v1/namespaces/{quote(namespace, safe='')}/pods"
                     f"?fieldSelector={quote('metadata.name=' + name, safe='')}")

    def get(self) -> tuple[dict[str, Any] | None, str]:
        """The pod object (None when it does not exist) and the list's resource version."""
        response = self._http.request("GET", self._url, headers=self._headers,
                                      timeout=self._urllib3.Timeout(connect=CONNECT_SECONDS, read=CONNECT_SECONDS))
        if response.status != 200:
            raise OSError(f"listing the pod answered {response.status}: {response.data[:200]!r}")
        listing = json.loads(response.data)
        items = listing.get("items") or []
        return (items[0] if items else None), (listing.get("metadata") or {}).get("resourceVersion", "")

    def events(self, version: str, *, seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, pod object) from ``version`` on, for at most ``seconds`` (the server ends it)."""
        url = f"{self._url}&watch=1&allowWatchBookmarks=false&timeoutSeconds={int(seconds)}"
        if version:
            url += f"&resourceVersion={quote(version, safe='')}"
        response = self._http.request("GET", url, headers=self._headers, preload_content=False,
                                      timeout=self._urllib3.Timeout(connect=CONNECT_SECONDS,
                                                                    read=seconds + CONNECT_SECONDS))
        try:
            if response.status == 410:
                raise WatchExpired()
            if response.status != 200:
                raise OSError(f"watching the pod answered {response.status}")
            buffer = b""
            for chunk in response.stream(4096):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event.get("type", ""), event.get("object") or {}
        finally:
            response.close()  # a watch cut short is not read to its end: its connection is not reused
            response.release_conn()

    def close(self) -> None:
        self._http.clear()


def own_pod_api(*, name: str, namespace: str, in_cluster: bool, config_file: str,
                cluster_context: str) -> OwnPodApi:
    """An :class:`OwnPodApi` with ``[kubernetes_executor]``'s credentials; raises UnsupportedCredentials."""
    if in_cluster:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise UnsupportedCredentials("KUBERNETES_SERVICE_HOST/PORT are not set")
        host = f"[{host}]" if ":" in host else host
        with open(os.path.join(SERVICE_ACCOUNT_DIR, "token"), encoding="utf-8") as handle:
            token = handle.read().strip()
        context = ssl.create_default_context(cafile=os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"))
        return OwnPodApi(server=f"https://{host}:{port}", headers={"Authorization": f"Bearer {token}"},
                         context=context, name=name, namespace=namespace)
    cluster, user, base = _kubeconfig_entries(config_file, cluster_context)
    server = cluster.get("server") or ""
    context = _tls_context(cluster, user, base) if server.startswith("https") else None
    headers: dict[str, str] = {}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(_path(user["tokenFile"], base), encoding="utf-8") as handle:
            token = handle.read().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return OwnPodApi(server=server, headers=headers, context=context, name=name, namespace=namespace)


def _kubeconfig_entries(config_file: str, cluster_context: str) -> tuple[dict, dict, str]:
    """(cluster, user, folder of the file) of the kubeconfig's context; only the plain kinds."""
    import yaml

    path = os.path.expanduser(config_file or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                              or "~/.kube/config")
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}

    def named(kind: str, wanted: str) -> dict:
        entry = next((item for item in document.get(kind) or [] if item.get("name") == wanted), None)
        if entry is None:
            raise UnsupportedCredentials(f"no {kind[:-1]} {wanted!r} in {path}")
        return entry.get(kind[:-1]) or {}

    context = named("contexts", cluster_context or document.get("current-context") or "")
    cluster, user = named("clusters", context.get("cluster", "")), named("users", context.get("user", ""))
    plain = {"token", "tokenFile", "client-certificate", "client-certificate-data", "client-key", "client-key-data"}
    if set(user) - plain or cluster.get("proxy-url"):
        raise UnsupportedCredentials(f"the kubeconfig user needs the official client ({sorted(set(user) - plain)})")
    return cluster, user, os.path.dirname(os.path.abspath(path))


def _tls_context(cluster: dict, user: dict, base: str) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode("ascii"))
    elif cluster.get("certificate-authority"):
        context = ssl.create_default_context(cafile=_path(cluster["certificate-authority"], base))
    else:
        context = ssl.create_default_context()
    if cluster.get("tls-server-name"):
        raise UnsupportedCredentials("tls-server-name needs the official client")
    certificate = _pem(user, "client-certificate", base)
    if certificate is not None:
        key = _pem(user, "client-key", base) or b""
        # ssl loads a client certificate from files only: a private file, deleted at once.
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as handle:
            os.chmod(handle.name, 0o600)
            handle.write(certificate + b"\n" + key)
            handle.flush()
            context.load_cert_chain(handle.name)
    return context


def _pem(entry: dict, field: str, base: str) -> bytes | None:
    if entry.get(f"{field}-data"):
        return base64.b64decode(entry[f"{field}-data"])
    if entry.get(field):
        with open(_path(entry[field], base), "rb") as handle:
            return handle.read()
    return None


def _path(value: str, base: str) -> str:
    return value if os.path.isabs(value) else os.path.join(base, value)
