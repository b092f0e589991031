"""Import errors: DAG files that failed to parse, with the reason a user can read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime


class ImportError_(Base):
    __tablename__ = "import_error"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    filename: Mapped[str] = mapped_column(Text, unique=True)
    stacktrace: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime)


DagImportError = ImportError_
