"""A self-signed certificate for the node agent's HTTPS endpoint.

The API server fetches logs from a node over HTTPS and, without a kubelet CA configured,
does not verify the certificate; any valid one will do. openssl is used because it is on
every machine this runs on and the runtime needs no crypto library of its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CERT_DAYS = 3650


def ensure_self_signed(folder: Path, *, common_name: str = "127.0.0.1") -> tuple[Path, Path]:
    """``(cert, key)`` under ``folder``, created on first use."""
    cert, key = folder / "kubelet.crt", folder / "kubelet.key"
    if cert.exists() and key.exists():
        return cert, key
    if shutil.which("openssl") is None:
        raise RuntimeError("the node agent needs the openssl command to create its serving certificate")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", str(CERT_DAYS), "-subj", f"/CN={common_name}",
         "-addext", f"subjectAltName=IP:{common_name},DNS:localhost"],
        check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key
