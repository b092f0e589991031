"""The serverless broker: kombu's filesystem transport, with a message file written whole.

kombu writes a message by opening its final name and then writing into it, while a
consumer takes any file with a queue's name the moment it lists one. A consumer that
lists the folder between the two reads an empty file, fails to decode it, and the
message is gone (seen under load: a worker's "Expecting value" and a try never run).
Here a message is written under a name no consumer matches and renamed into place, so
it appears complete or not at all (a rename within one folder is atomic).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

#: What ``broker_transport`` names for a ``filesystem://`` broker URL.
TRANSPORT = "crossdock.executors.filesystem_broker:Transport"
#: Suffix of a message file still being written (no queue's pattern matches it).
PARTIAL_SUFFIX = ".part"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``: written aside, then renamed into the queue."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
