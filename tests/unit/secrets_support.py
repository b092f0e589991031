"""What the Variables, Connections and masking tests share: an environment without stray
``CROSSDOCK_VAR_``/``CROSSDOCK_CONN_`` variables, and the real command line."""

from __future__ import annotations

import os

import pytest

from crossdock.cli.main import main


@pytest.fixture(autouse=True)
def no_stray_secret_variables(monkeypatch):
    """Only the Variables and Connections a test sets itself exist."""
    for name in list(os.environ):
        if name.startswith(("CROSSDOCK_VAR_", "CROSSDOCK_CONN_")):
            monkeypatch.delenv(name)


def crossdock(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``crossdock ARGV`` in this process; ``(exit code, stdout, stderr)``."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
