"""``[executor_routing] overflow``: rules parsed and checked, conditions evaluated, and the
scheduler moving a burst only while the backlog holds (see crossdock.executors.overflow)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from crossdock.configuration import ConfigError, conf
from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
from crossdock.executors.overflow import Backlogs, Clause, may_move, parse_overflow_rules
from crossdock.executors.routing import ExecutorRouter
from crossdock.scheduler.scheduler_job import SchedulerJob

from scheduler_support import ScriptedExecutor, write_dag
from test_scheduler import MAX_LOOPS, dags_folder, parse, run_states, runs_done, trigger  # noqa: F401

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def backlogs(*entries):
    return Backlogs(lambda: entries)


def test_rules_parse_one_a_line_or_comma_separated_with_and_binding_before_or():
    rules = parse_overflow_rules("""
        default -> KubernetesExecutor when queued > 50 or oldest_wait > 30s,
        kube*  ->  CeleryExecutor when pending >= 20 and pending_wait > 2m
    """)
    assert [(r.pattern, r.target) for r in rules] == [("default", "KubernetesExecutor"), ("kube*", "CeleryExecutor")]
    assert rules[0].alternatives == ((Clause("queued", ">", 50),), (Clause("oldest_wait", ">", 30),))
    assert rules[1].alternatives == ((Clause("pending", ">=", 20), Clause("pending_wait", ">", 120)),)
    assert rules[0].text == "default -> KubernetesExecutor when queued > 50 or oldest_wait > 30s"
    assert rules[0].names_queue_exactly and not rules[1].names_queue_exactly
    assert parse_overflow_rules("  ") == []


@pytest.mark.parametrize("text, names", [
    ("default KubernetesExecutor when queued > 5", "is not '<queue glob> -> <executor> when <condition>'"),
    ("default -> KubernetesExecutor queued > 5", "is not '<queue glob> -> <executor> when <condition>'"),
    ("default -> KubernetesExecutor when backlog > 5", "names metric 'backlog'"),
    ("default -> KubernetesExecutor when queued > 5s", "gives 'queued' a unit"),
    ("default -> KubernetesExecutor when queued = 5", "not '<metric> <op> <number>'"),
    ("default -> KubernetesExecutor when queued > 5 or", "not '<metric> <op> <number>'"),
])
def test_a_bad_rule_is_one_line_naming_the_option_and_the_bad_part(text, names):
    with pytest.raises(ConfigError) as raised:
        parse_overflow_rules(f"gpu -> KubernetesExecutor when queued > 1\n{text}")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("[executor_routing] overflow: ")
    assert repr(text) in message and names in message


def test_a_rule_naming_an_unconfigured_executor_fails_when_the_router_is_built():
    with pytest.raises(ConfigError, match=r"\[executor_routing\] overflow: .* names executor 'NomadExecutor'"):
        ExecutorRouter([ScriptedExecutor()], rules=[],
                       overflow=parse_overflow_rules("default -> NomadExecutor when queued > 1"))


def test_conditions_hold_on_the_source_executors_backlog_of_the_tasks_queue():
    (rule,) = parse_overflow_rules("default -> KubernetesExecutor when queued > 2 or oldest_wait > 30s")
    old = NOW - timedelta(seconds=45)
    assert rule.holds(backlogs(("CeleryExecutor", "default", NOW)).of("CeleryExecutor", "default"), NOW) is None
    waiting = backlogs(("CeleryExecutor", "default", old), ("CeleryExecutor", "default", NOW))
    assert rule.holds(waiting.of("CeleryExecutor", "default"), NOW) == "oldest_wait 45s > 30s"
    assert rule.holds(waiting.of("CeleryExecutor", "other"), NOW) is None  # another queue's backlog
    waiting.add("CeleryExecutor", "default", NOW)  # a try sent this step counts at once
    assert rule.holds(waiting.of("CeleryExecutor", "default"), NOW) == "queued 3 > 2"
    (both,) = parse_overflow_rules("default -> KubernetesExecutor when queued > 2 and oldest_wait > 60s")
    assert both.holds(waiting.of("CeleryExecutor", "default"), NOW) is None


def test_who_may_move_by_a_glob_rule_or_a_rule_naming_the_queue():
    exact, glob = parse_overflow_rules("default -> K when queued > 1, def* -> K when queued > 1")
    assert may_move(exact, overflow=None, pinned=False) and not may_move(glob, overflow=None, pinned=False)
    assert may_move(glob, overflow=True, pinned=False) and may_move(glob, overflow=True, pinned=True)
    assert not may_move(exact, overflow=False, pinned=False)
    assert not may_move(exact, overflow=None, pinned=True)  # executor= on the task pins it


def test_overflow_on_a_task_is_true_false_or_unset():
    from crossdock import DAG, BashOperator
    from crossdock.dag.exceptions import DagDefinitionError

    with DAG("flags"):
        assert BashOperator(task_id="unset", bash_command="true").overflow is None
        with pytest.raises(DagDefinitionError, match="overflow must be True, False or None, not 'yes'"):
            BashOperator(task_id="bad", bash_command="true", overflow="yes")


def test_the_router_moves_to_a_hybrid_child_and_says_why():
    hybrid = CeleryKubernetesExecutor(celery_executor=ScriptedExecutor(), kubernetes_executor=ScriptedExecutor())
    router = ExecutorRouter([hybrid], rules=[], overflow=parse_overflow_rules(
        "default -> KubernetesExecutor when queued > 1, kubernetes -> KubernetesExecutor when queued > 0"))
    busy = backlogs(*[("CeleryExecutor", "default", NOW)] * 2, ("KubernetesExecutor", "kubernetes", NOW))
    normal = router.route("default", None)
    moved = router.overflow(normal, "default", overflow=None, pinned=False, backlogs=busy, now=NOW)
    assert (moved.executor, moved.name) == (hybrid, "KubernetesExecutor")
    assert moved.reason == ("overflow: queue 'default' queued 2 > 1 on CeleryExecutor (rule 'default -> "
                            "KubernetesExecutor when queued > 1'); KubernetesExecutor instead of CeleryExecutor")
    pod = router.route("kubernetes", None)  # already where its rule points: stays
    assert router.overflow(pod, "kubernetes", overflow=None, pinned=False, backlogs=busy, now=NOW) is pod


def test_a_burst_spills_while_the_backlog_holds_and_a_later_task_stays(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__EXECUTOR_ROUTING__OVERFLOW", "default -> KubernetesExecutor when queued > 2")
    conf.reload()
    write_dag(dags_folder, "burst", """
        with DAG("burst") as dag:
            burst = [BashOperator(task_id=f"b{i}", bash_command="true") for i in range(6)]
            stay = BashOperator(task_id="stay", bash_command="true", overflow=False)
            burst >> BashOperator(task_id="after", bash_command="true")
    """)
    parse(dags_folder)
    trigger("burst")
    hybrid = CeleryKubernetesExecutor(celery_executor=ScriptedExecutor(beats=2),
                                      kubernetes_executor=ScriptedExecutor(beats=2))
    SchedulerJob(executors=[hybrid], parse_dags=False).run(stop_when=runs_done, max_loops=MAX_LOOPS)
    state, tis = run_states("burst")
    assert state == "success"
    moved = sorted(t for t, ti in tis.items() if ti.executor == "KubernetesExecutor")
    # Three of the burst made the backlog, the other three spilled; stay refused; after came once it drained.
    assert len(moved) == 3 and all(t.startswith("b") for t in moved)
    assert all(tis[t].routing_reason.startswith("overflow: queue 'default' queued ") for t in moved)
    assert not any(ti.routing_reason.startswith("overflow") for t, ti in tis.items() if t not in moved)
    assert tis["stay"].executor == tis["after"].executor == "CeleryExecutor"
    started = [key.task_id for key in hybrid.celery_executor.started + hybrid.kubernetes_executor.started]
    assert sorted(started) == sorted(tis)  # every task started once, on one side
