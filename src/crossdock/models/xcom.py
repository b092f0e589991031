"""XComs: the values tasks pushed, one row per (task instance, key), stored as XCom text.

Only the scheduler writes here (design principle 1): a try's values reach it through
the executor's channel with the try's success (see :mod:`crossdock.runner.try_values`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime


class XCom(Base):
    __tablename__ = "xcom"

    dag_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    map_index: Mapped[int] = mapped_column(Integer, primary_key=True, default=-1)
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    #: The value as JSON text (:mod:`crossdock.dag.xcom_values` tags the types JSON lacks).
    value: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime)
