"""``crossdock jobs``: which scheduler processes exist, which one is active, which are standbys."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from crossdock.cli.output import print_rows
from crossdock.configuration import conf
from crossdock.database import create_session, ensure_migrated
from crossdock.models import Job
from crossdock.models.base import utcnow

COLUMNS = ["id", "job_type", "role", "state", "alive", "hostname", "pid", "latest_heartbeat", "start_date"]


def job_rows(*, only_running: bool = False) -> list[dict]:
    """Every job, newest first, with its role: ``active`` holds the scheduler lease."""
    from crossdock.scheduler.leadership import active_job_id

    dead_before = utcnow() - timedelta(seconds=conf.getfloat("scheduler", "scheduler_health_check_threshold"))
    query = select(Job).order_by(Job.id.desc())
    if only_running:
        query = query.where(Job.state == "running")
    with create_session() as session:
        active = active_job_id(session)
        rows = []
        for job in session.scalars(query):
            alive = job.state == "running" and job.latest_heartbeat >= dead_before
            role = "active" if job.id == active and alive else ("standby" if alive else "")
            rows.append({"id": job.id, "job_type": job.job_type, "role": role, "state": job.state,
                         "alive": alive, "hostname": job.hostname, "pid": job.pid,
                         "latest_heartbeat": job.latest_heartbeat, "start_date": job.start_date})
    return rows


def list_jobs(args) -> int:
    ensure_migrated()
    print_rows(job_rows(only_running=args.running), columns=COLUMNS, output=args.output)
    return 0


def check(args) -> int:
    """Exit 0 when an alive scheduler job exists (with ``--active``: one holding the lease)."""
    ensure_migrated()
    rows = [row for row in job_rows(only_running=True) if row["alive"]
            and (args.hostname is None or row["hostname"] == args.hostname)
            and (not args.active or row["role"] == "active")]
    if rows:
        print(f"{len(rows)} alive scheduler job(s): " + ", ".join(f"{r['id']} ({r['role']})" for r in rows))
        return 0
    print("no alive scheduler job" + (" holds the lease" if args.active else ""))
    return 1
