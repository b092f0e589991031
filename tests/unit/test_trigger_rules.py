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
    # all_success settles as soon as it cannot be met, as Airflow's does
    ("all_success", ["skipped", "running"], "skipped"),
    ("all_skipped", ["skipped", "removed"], RUN),
    ("all_skipped", ["skipped", "running"], WAIT),
    ("all_skipped", ["skipped", "success"], "skipped"),
    ("all_skipped", ["running", "failed"], "skipped"),
    ("one_success", ["skipped", "skipped"], "skipped"),
    ("one_done", ["running", "failed"], RUN),
    ("one_done", ["success", "running"], RUN),
    ("one_done", ["skipped", "running"], WAIT),
    ("one_done", ["skipped", "skipped"], "skipped"),
    ("none_failed", ["success", "running"], WAIT),
    ("none_failed_min_one_success", ["success", "skipped"], RUN),
    ("none_failed_min_one_success", ["skipped", "skipped"], "skipped"),
    ("none_failed_min_one_success", ["skipped", "running"], WAIT),
    ("none_failed_min_one_success", ["success", "upstream_failed"], "upstream_failed"),
    ("none_skipped", ["success", "failed"], RUN),
    ("none_skipped", ["success", "skipped"], "skipped"),
    ("none_skipped", ["success", "running"], WAIT),
])
def test_verdicts(rule, states, verdict):
    assert evaluate(rule, states) == verdict


def test_every_rule_a_dag_accepts_is_evaluated():
    from crossdock.dag.trigger_rule import TRIGGER_RULES

    for rule in TRIGGER_RULES:
        assert evaluate(rule, ["success"]) in (RUN, "skipped")


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="unknown trigger rule"):
        evaluate("sometimes", ["success"])
