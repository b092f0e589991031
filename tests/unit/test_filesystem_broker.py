"""The serverless broker writes each message whole before any consumer can take it.

kombu's own filesystem transport lets a consumer take a message file that is still
empty (it lists the folder between the writer's open and write), and the message is
lost. The test makes a consumer look at exactly that moment: the message must not be
there yet, and must arrive whole right after.
"""

from __future__ import annotations

import os
from queue import Empty

import pytest
from kombu import Connection

from crossdock.configuration import conf
from crossdock.executors import filesystem_broker
from crossdock.executors.celery_app import celery_settings, filesystem_folders


def connection(tmp_path) -> Connection:
    folders = filesystem_folders(f"filesystem:///{tmp_path}")
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    return Connection("filesystem://", transport=filesystem_broker.TRANSPORT, transport_options=folders)


def test_a_consumer_looking_mid_write_sees_nothing_then_the_whole_message(tmp_path, monkeypatch):
    with connection(tmp_path) as conn:
        channel = conn.default_channel
        channel.queue_declare("q")
        seen_mid_write = []
        real_replace = os.replace

        def look_then_rename(src, dst):
            assert src.endswith(filesystem_broker.PARTIAL_SUFFIX) and os.path.getsize(src) > 0
            try:
                seen_mid_write.append(channel._get("q"))
            except Empty:
                seen_mid_write.append(None)
            assert channel._size("q") == 0
            real_replace(src, dst)

        monkeypatch.setattr(filesystem_broker.os, "replace", look_then_rename)
        channel._put("q", {"body": "hello"})
        assert seen_mid_write == [None]
        assert channel._size("q") == 1
        assert channel._get("q") == {"body": "hello"}
        with pytest.raises(Empty):
            channel._get("q")


def test_celery_uses_it_for_a_filesystem_broker_url_only(monkeypatch):
    assert celery_settings()["broker_transport"] == filesystem_broker.TRANSPORT  # the serverless default
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", "redis://127.0.0.1:6379/0")
    conf.reload()
    assert "broker_transport" not in celery_settings()
