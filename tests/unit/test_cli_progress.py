"""The progress line of ``dags trigger --wait`` and ``dags backfill``: rewritten in place on a
terminal, one plain line per change otherwise, never the same text twice in a row."""

from __future__ import annotations

import io

from crossdock.cli.progress import REWRITE, ProgressLine, backfill_progress_text, run_progress_text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_rewritten_in_place_and_ended_once():
    stream = Terminal()
    line = ProgressLine(stream)
    for text in ("run r: running · tasks 0/2 done", "run r: running · tasks 0/2 done", "run r: success"):
        line.show(text)
    line.close()
    assert stream.getvalue() == f"{REWRITE}run r: running · tasks 0/2 done{REWRITE}run r: success\n"


def test_without_a_terminal_each_change_is_a_line_of_its_own():
    stream = io.StringIO()
    line = ProgressLine(stream)
    for text in ("a", "a", "b"):
        line.show(text)
    line.close()
    assert stream.getvalue() == "a\nb\n"


def test_a_live_line_longer_than_the_terminal_is_cut_so_it_never_wraps(monkeypatch):
    import os

    monkeypatch.setattr("shutil.get_terminal_size", lambda: os.terminal_size((20, 24)))
    stream = Terminal()
    ProgressLine(stream).show("x" * 50)
    shown = stream.getvalue()[len(REWRITE):]
    assert len(shown) < 20 and shown.endswith("…")


def test_progress_texts_count_states_in_a_readable_order():
    run = {"run_id": "r1", "state": "running", "total": 4, "done": 2,
           "states": {"none": 1, "running": 1, "success": 1, "failed": 1}}
    assert run_progress_text(run) == "run r1: running · tasks 2/4 done · success 1, failed 1, running 1, none 1"
    assert run_progress_text({**run, "state": "queued", "total": 0, "states": {}}) == \
        "run r1: queued (no task instances yet)"
    assert backfill_progress_text({"dag_id": "d", "total": 30, "done": 3, "states": {"queued": 24, "success": 3,
                                                                                     "running": 3}}) == \
        "backfill of d: runs 3/30 done · success 3, running 3, queued 24"
