"""The explicit life cycle shared by backends, sources and sinks (as Polygraphy's runners).

Construct cheaply; ``open()`` acquires (session, device, file), ``close()`` releases.
Both are idempotent, and the object is a context manager.
"""
from __future__ import annotations

import abc
from typing import TypeVar

R = TypeVar("R", bound="Resource")


class Resource(abc.ABC):
    """Subclasses implement ``_open``/``_close``; callers use ``open``/``close`` or ``with``."""

    _opened: bool = False

    def open(self: R) -> R:
        if not self._opened:
            self._open()
            self._opened = True
        return self

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    @property
    def is_open(self) -> bool:
        return self._opened

    def __enter__(self: R) -> R:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...
