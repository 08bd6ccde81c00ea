"""Timed workflow stages with a progress bar (shared by the workflows)."""

from __future__ import annotations

import time
import weakref
from contextlib import contextmanager

from tqdm.auto import tqdm

__all__ = ["Stages", "close_open_bars"]

_OPEN: weakref.WeakSet = weakref.WeakSet()  # Stages whose bar is still drawn


def close_open_bars() -> None:
    """Close every progress bar still open (before an error message is printed)."""
    for stages in list(_OPEN):
        stages.close()


class Stages:
    """A tqdm bar over a workflow's stages and the wall time of each (seconds, by name)."""

    def __init__(self, total: int, desc: str, quiet: bool):
        self.bar = tqdm(total=total, desc=desc, disable=quiet, unit="stage")
        self.timings: dict[str, float] = {}
        _OPEN.add(self)

    def start(self, name: str, label: str | None = None) -> None:
        """Begin timing stage ``name``; the bar shows ``label`` (default ``name``)."""
        self.bar.set_postfix_str(label or name)
        self._t0 = time.perf_counter()

    def done(self, name: str) -> None:
        """End stage ``name``: record its wall time and advance the bar."""
        self.timings[name] = time.perf_counter() - self._t0
        self.bar.update()

    @contextmanager
    def stage(self, name: str, label: str | None = None):
        """Time the ``with`` block as stage ``name`` (:meth:`start` ... :meth:`done`)."""
        self.start(name, label)
        try:
            yield
        except BaseException:
            self.close()  # the error is reported on a clean line
            raise
        self.done(name)

    def close(self) -> None:
        """Close the progress bar (idempotent)."""
        _OPEN.discard(self)
        self.bar.close()
