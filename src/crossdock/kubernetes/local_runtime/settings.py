"""The local pod runtime's ``[kubernetes_local_runtime]`` section as the runtime uses it.

The keys are declared in :mod:`crossdock.config_schema` with the rest of crossdock's; the
defaults the runtime's modules need as constants are taken from those declarations.
"""

from __future__ import annotations

from crossdock.config_schema import KUBERNETES_LOCAL_RUNTIME
from crossdock.configuration import conf

SECTION = "kubernetes_local_runtime"

DEFAULT_NODE_NAME = KUBERNETES_LOCAL_RUNTIME["node_name"].default
#: Events kept for watches before the oldest are compacted away (then: 410 Gone).
DEFAULT_HISTORY_LIMIT = KUBERNETES_LOCAL_RUNTIME["history_limit"].default

def reject_image_patterns() -> list[str]:
    raw = conf.getstr(SECTION, "reject_images")
    return [item.strip() for item in raw.split(",") if item.strip()]
