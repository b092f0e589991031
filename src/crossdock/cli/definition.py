"""How commands are described; the classes live in :mod:`crossdock.cli_definition`.

They sit below the CLI package so that executors can describe the command groups they
vend (``get_cli_commands``) without importing the CLI.
"""

from __future__ import annotations

from crossdock.cli_definition import ActionCommand, Arg, GroupCommand, Handler, lazy_load_command

__all__ = ["ActionCommand", "Arg", "GroupCommand", "Handler", "lazy_load_command"]
