"""How many messages wait in each Celery queue, asked of the broker itself.

kombu answers the same question on every transport: a passive ``queue_declare`` returns
the queue's ready message count — RabbitMQ's own count, the length of the Redis list
(summed over priority sub-queues), the message files of the serverless filesystem broker.
A queue nobody declared yet holds nothing; that is 0, not an error.
"""

from __future__ import annotations

from typing import Any, Iterable

from crossdock.exceptions import CrossdockError

#: Seconds to wait for the broker before the monitor reports it unreachable.
BROKER_CONNECT_TIMEOUT = 2.0


class BrokerUnreachable(CrossdockError):
    """The broker did not answer; the message names it (credentials masked)."""


def broker_depths(app: Any, queues: Iterable[str]) -> dict[str, int]:
    """``queue → ready messages`` for each queue; :class:`BrokerUnreachable` if it cannot connect."""
    from kombu.exceptions import ChannelError, OperationalError

    from crossdock.config_secrets import redact_url

    depths: dict[str, int] = {}
    url = redact_url(str(app.conf.broker_url))
    try:
        with app.connection_for_read(connect_timeout=BROKER_CONNECT_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_CONNECT_TIMEOUT)
            for queue in queues:
                channel = connection.channel()
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:
                    depths[queue] = 0  # never declared: nothing has been sent to it
                except Exception as exc:  # noqa: BLE001 - AMQP's NOT_FOUND closes the channel
                    if "NOT_FOUND" not in str(exc):
                        raise
                    depths[queue] = 0
                finally:
                    try:
                        channel.close()
                    except Exception:  # noqa: BLE001 - a channel the broker closed already
                        pass
    except (OperationalError, ConnectionError, OSError) as exc:
        raise BrokerUnreachable(f"broker {url} unreachable: {exc}") from None
    return depths
