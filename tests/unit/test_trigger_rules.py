"""Trigger rules: run, wait, or settle a task from its upstream states."""

import pytest

from crossdock.scheduler.trigger_rules import RUN, WAIT, evaluate


@pytest.mark.parametrize("rule, states, verdict", [
    ("all_success", [], RUN),
    ("all_success", ["success", "success"], RUN),
    ("all_success", ["success", "running"], WAIT),
    ("all_success", ["success", "failed"], "upstream_failed"),
    ("all_success", ["running", "upstream_failed"], "upstream_failed"),
    ("all_success", ["success", "skipped"], "skipped"),
    ("all_done", ["success", "failed"], RUN),
    ("all_done", ["success", "queued"], WAIT),
    ("one_success", ["success", "running"], RUN),
    ("one_success", ["failed", "failed"], "upstream_failed"),
    ("one_failed", ["failed", "running"], RUN),
    ("one_failed", ["success", "success"], "skipped"),
    ("all_failed", ["failed", "upstream_failed"], RUN),
    ("all_failed", ["failed", "success"], "skipped"),
    ("none_failed", ["success", "skipped"], RUN),
    ("none_failed", ["success", "failed"], "upstream_failed"),
    ("always", ["running"], RUN),
])
def test_verdicts(rule, states, verdict):
    assert evaluate(rule, states) == verdict


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="unknown trigger rule"):
        evaluate("sometimes", ["success"])
