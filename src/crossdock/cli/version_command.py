"""``crossdock version``."""

from crossdock import __version__


def version(_args) -> int:
    print(__version__)
    return 0
