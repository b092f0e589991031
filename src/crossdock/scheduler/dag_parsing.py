"""The DAG folder, parsed at start and again every ``dag_dir_list_interval`` on a thread.

User code never runs in the scheduler: each file is imported in a child process and only
the serialized result comes back, so a DAG file that hangs or crashes costs its own
import error, not the loop. The loop learns that DAGs changed through :attr:`changed`.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("crossdock.scheduler")


class DagFolderParser:
    def __init__(self, dags_folder: str, interval: float):
        self.dags_folder = dags_folder
        self.interval = interval
        #: Set after every parse; the loop clears it when it re-reads the scheduled DAGs.
        self.changed = threading.Event()
        self._thread: threading.Thread | None = None

    def parse_once(self) -> None:
        from crossdock.dag.dag_store import store_parse_result
        from crossdock.dag.processor import parse_dag_folder

        result = parse_dag_folder(self.dags_folder)
        store_parse_result(result)
        for path, error in result.import_errors.items():
            text = error.strip()
            log.warning("DAG file %s failed to import: %s", path, text.splitlines()[-1] if text else error)
        self.changed.set()

    def start(self, stop: threading.Event) -> None:
        """Re-parse on a daemon thread until ``stop`` is set (nothing when the interval is 0)."""
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._parse_forever, args=(stop,), name="dag-parser", daemon=True)
        self._thread.start()

    def _parse_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.parse_once()
            except Exception:  # noqa: BLE001 - parsing trouble must not stop the scheduler
                log.exception("parsing the DAG folder failed")
