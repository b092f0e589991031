"""Variables and Connections for tasks, read without the metadata database.

A try never holds database credentials (design principle 1), so Variables and
Connections come from a chain of backends a try can read where it runs
(:mod:`crossdock.secrets.backends`): environment variables ``CROSSDOCK_VAR_<KEY>`` /
``CROSSDOCK_CONN_<ID>``, then a local JSON or YAML file of each (on Kubernetes, a Secret
the pod template mounts at those paths). Values that are secrets are masked in the try's
output once read (:mod:`crossdock.secrets.masking`).

Names are resolved on first use, so importing this package reads and imports nothing else.
"""

from __future__ import annotations

from crossdock.lazy_names import lazy_exports

_LAZY: dict[str, str] = {
    "Variable": "crossdock.secrets.variable",
    "Connection": "crossdock.secrets.connection",
    "get_connection": "crossdock.secrets.backends",
    "mask_secret": "crossdock.secrets.masking",
    "redact": "crossdock.secrets.masking",
    "VariableAccessor": "crossdock.secrets.context_accessors",
    "ConnectionAccessor": "crossdock.secrets.context_accessors",
    "SecretsError": "crossdock.secrets.errors",
    "VariableNotFound": "crossdock.secrets.errors",
    "ConnectionNotFound": "crossdock.secrets.errors",
    "InvalidConnection": "crossdock.secrets.errors",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
