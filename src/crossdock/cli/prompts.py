"""Asking before a command changes a lot (clearing many task instances, deleting a DAG)."""

from __future__ import annotations

import sys

from crossdock.cli.errors import CliError


def confirm(question: str, *, yes: bool) -> bool:
    """True to go ahead: ``yes`` (``-y``) given, or the person at the terminal said so.

    Without a terminal nobody can answer: that is an error asking for ``-y``, rather
    than a guess either way.
    """
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CliError(f"{question} Not asked without a terminal: add -y to go ahead")
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")
