"""Self-signed certificates for the runtime's HTTPS listeners: the pods API and the node agent.

The pods API serves HTTPS because kubectl sends a bearer token over TLS only; its
certificate goes into the kubeconfig as the cluster's CA, so clients verify it. The API
server fetches logs from a node over HTTPS and, without a kubelet CA configured, does not
verify the node's certificate; any valid one will do. openssl is used because it is on
every machine this runs on and the runtime needs no crypto library of its own.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from pathlib import Path

from crossdock.kubernetes.local_runtime.private_files import private_dir

CERT_DAYS = 3650


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def ensure_self_signed(folder: Path, *, common_name: str = "127.0.0.1", name: str = "kubelet",
                       hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """``(cert, key)`` (``<name>.crt`` / ``<name>.key``) under ``folder``, created on first use.

    :param hosts: more addresses or host names the certificate is valid for.
    """
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    if cert.exists() and key.exists():
        return cert, key
    if shutil.which("openssl") is None:
        raise RuntimeError("the local pod runtime needs the openssl command to create its serving certificates")
    private_dir(folder)
    names = [f"IP:{common_name}", "DNS:localhost"]
    for host in hosts:
        entry = f"IP:{host}" if _is_ip(host) else f"DNS:{host}"
        if entry not in names and host not in ("0.0.0.0", "::"):
            names.append(entry)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", str(CERT_DAYS), "-subj", f"/CN={common_name}",
         "-addext", f"subjectAltName={','.join(names)}"],
        check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context serving ``cert``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context
