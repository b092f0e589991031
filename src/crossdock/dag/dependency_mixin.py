"""``>>`` and ``<<`` for anything that links like a task (Airflow's ``DependencyMixin``).

A class with ``set_downstream`` and ``set_upstream`` gets the four operators from here:
``x >> y`` and ``x << y`` return ``y`` so chains read left to right, and the reflected
forms make ``[a, b] >> x`` work, since a list has no ``>>`` of its own.
"""

from __future__ import annotations

from typing import Any


class DependencyMixin:
    """The shift operators in terms of ``set_downstream`` / ``set_upstream``."""

    def set_downstream(self, others: Any) -> None:
        raise NotImplementedError

    def set_upstream(self, others: Any) -> None:
        raise NotImplementedError

    def __rshift__(self, other: Any) -> Any:
        """``self >> other``: other runs after self."""
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        """``self << other``: self runs after other."""
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Any:
        """``[a, b] >> self``."""
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Any:
        """``[a, b] << self``."""
        self.set_downstream(other)
        return self
