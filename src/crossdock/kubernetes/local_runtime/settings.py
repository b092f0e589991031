"""The ``[kubernetes_local_runtime]`` configuration section and the runtime's constants.

Declared here (not in configuration.py) so the section lives beside the code that reads
it; importing the local runtime registers it.
"""

from __future__ import annotations

from crossdock.configuration import Option, conf, register_defaults

SECTION = "kubernetes_local_runtime"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_NODE_NAME = "crossdock-local"
#: Events kept for watches before the oldest are compacted away (then: 410 Gone).
DEFAULT_HISTORY_LIMIT = 10000
#: Image names the node agent pretends it cannot pull (fnmatch patterns, comma separated).
DEFAULT_REJECT_IMAGES = "*:does-not-exist"

register_defaults(SECTION, {
    "host": Option(DEFAULT_HOST, "str", "Address the local pods API listens on."),
    "port": Option(0, "int", "Port of the local pods API; 0 picks a free port."),
    "state_dir": Option("{CROSSDOCK_HOME}/pod-runtime", "str",
                        "Folder holding the API's saved pods, the agent's pod folders and logs."),
    "node_name": Option(DEFAULT_NODE_NAME, "str", "Name of the node the agent registers."),
    "reject_images": Option(DEFAULT_REJECT_IMAGES, "str",
                            "Comma-separated fnmatch patterns of images reported as ErrImagePull."),
    "history_limit": Option(DEFAULT_HISTORY_LIMIT, "int",
                            "Watch events kept before older resource versions answer 410 Gone."),
    "kubelet_client_ca_file": Option("", "str",
                                     "CA file: the node agent's endpoint also accepts client certificates it "
                                     "signed (set a real API server's --kubelet-client-certificate from it)."),
    "kubelet_anonymous_log_reads": Option(False, "bool",
                                          "Serve container logs from the node agent's endpoint without "
                                          "credentials, for an API server that presents none to nodes; "
                                          "stats and fault hooks stay authenticated."),
})


def reject_image_patterns() -> list[str]:
    raw = conf.getstr(SECTION, "reject_images")
    return [item.strip() for item in raw.split(",") if item.strip()]
