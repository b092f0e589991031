"""Following a warm pod's log for its ready line: what the node's answers mean before the line comes.

The API here is a stand-in answering in a scripted order: the window in which a real node
answers 404 for a pod just bound to it is a few milliseconds wide and cannot be held open
on purpose (the real exchange is covered by the warm-pod tests on both tiers).
"""

from __future__ import annotations

import time

from kubernetes.client.rest import ApiException

from crossdock.executors.kubernetes_warm_readiness import ReadinessFollower
from crossdock.kubernetes.warm_profile import READY_LINE


class Stream:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, _size):
        yield self.data

    def close(self):
        pass

    def release_conn(self):
        pass


class Core:
    """Answers a log read with ``log_answers`` in turn (an int: that HTTP error), and the pod read with ``pod``."""

    def __init__(self, log_answers, pod=200):
        self.log_answers, self.pod = list(log_answers), pod

    def read_namespaced_pod_log(self, *args, **kwargs):
        answer = self.log_answers.pop(0) if len(self.log_answers) > 1 else self.log_answers[0]
        if isinstance(answer, int):
            raise ApiException(status=answer)
        return Stream(answer)

    def read_namespaced_pod(self, *args, **kwargs):
        if self.pod != 200:
            raise ApiException(status=self.pod)
        return Stream(b"{}")


def settle(follower, limit=5.0):
    deadline = time.monotonic() + limit
    while follower._thread.is_alive() and not follower.is_ready and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_node_that_has_not_taken_the_pod_in_yet_is_asked_again():
    """A kubelet answers 404 for a pod bound to it that it has not synced yet: not a pod that is gone."""
    follower = ReadinessFollower(Core([404, 404, 400, f"importing\n{READY_LINE}\n".encode()]), name="warm-1",
                                 namespace="ns", give_up_after=10)
    settle(follower)
    assert follower.is_ready


def test_a_pod_that_is_gone_is_followed_no_more():
    follower = ReadinessFollower(Core([404], pod=404), name="warm-1", namespace="ns", give_up_after=10)
    settle(follower)
    assert not follower.is_ready and not follower._thread.is_alive()
