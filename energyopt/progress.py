"""Phases of long work, reported to whoever listens: the library says what it is doing, the CLI shows it.

A library function wraps a long step in :func:`phase` (``with phase("packing"): ...``; with
``total=`` it may also :meth:`Phase.advance` through counted steps, and :meth:`Phase.show` a short
status beside it, such as a bound that rises). Without a listener this costs nothing and shows
nothing. The CLI installs one (:func:`listening`) that draws the phases running now with their
elapsed time, ticking while a solver backend runs in C code or in a child process (the CLI's
listener is ``rich``; this module imports no display library).

A listener also hears the progress lines the library prints (:func:`note`), so that a display can
show the last one beside the phase it belongs to.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Listener", "Phase", "phase", "note", "listening", "current_phase", "SHOW_EVERY_S"]

#: a phase's status (:meth:`Phase.show`) reaches the listener at most this often [s]; a display
#: redraws four times a second, so more would only cost time in loops that report as they go
SHOW_EVERY_S = 0.2


class Listener(Protocol):
    """What a display implements: a phase began (with its total of steps, or None), advanced,
    showed a status, ended; a progress line was printed."""

    def begin(self, key: int, name: str, total: int | None) -> None: ...

    def advance(self, key: int, steps: int) -> None: ...

    def status(self, key: int, text: str) -> None: ...

    def end(self, key: int) -> None: ...

    def line(self, text: str) -> None: ...


#: the listener and the process it listens in (a forked child, such as a solver under the watchdog, inherits
#: this context, but its copy of the display draws nothing and its locks may have been copied held)
_listener: contextvars.ContextVar[tuple[Listener, int] | None] = contextvars.ContextVar("energyopt_progress", default=None)
_current: contextvars.ContextVar[Phase | None] = contextvars.ContextVar("energyopt_phase", default=None)
_keys = iter(range(1, 1 << 62))


class Phase:
    """A phase under way; :meth:`advance` counts its steps (when it was given a total), :meth:`show`
    sets the status shown beside it."""

    def __init__(self, listener: Listener | None, key: int) -> None:
        self._listener, self._key = listener, key
        self._shown_at = -float("inf")
        self._pid = os.getpid()

    @property
    def heard(self) -> bool:
        """Whether anyone listens here (a caller may skip composing a status nobody sees; nobody
        does in a forked child)."""
        return self._listener is not None and os.getpid() == self._pid

    def advance(self, steps: int = 1) -> None:
        if self._listener is not None and os.getpid() == self._pid:
            self._listener.advance(self._key, steps)

    def show(self, text: str, force: bool = False) -> None:
        """The status beside the phase (replacing the last one; not a progress line, not logged): at
        most every :data:`SHOW_EVERY_S` unless ``force``. Safe from another thread (a solver's
        callback); ignored in a forked child (a solver under the watchdog), whose copy of the
        display draws nothing and whose locks may have been copied held."""
        listener = self._listener
        if listener is None or os.getpid() != self._pid:
            return
        now = time.monotonic()
        if force or now - self._shown_at >= SHOW_EVERY_S:
            self._shown_at = now
            listener.status(self._key, text)


_SILENT = Phase(None, 0)


@contextlib.contextmanager
def phase(name: str, total: int | None = None) -> Iterator[Phase]:
    """The block is the phase ``name`` (e.g. ``"solve: exact MILP with highs"``), with ``total``
    steps if it counts them."""
    listener = _heard()
    if listener is None:
        yield _SILENT
        return
    key = next(_keys)
    ph = Phase(listener, key)
    listener.begin(key, name, total)
    token = _current.set(ph)
    try:
        yield ph
    finally:
        _current.reset(token)
        listener.end(key)


def _heard() -> Listener | None:
    """The listener of this context, if it listens in this process."""
    got = _listener.get()
    return got[0] if got is not None and got[1] == os.getpid() else None


def current_phase() -> Phase:
    """The innermost phase running in this context (a silent one where none runs or nobody listens):
    a solver hands it to a callback that runs in its own threads, where this context is not."""
    return _current.get() or _SILENT


def note(text: str) -> None:
    """A progress line was printed: the listener may show it beside the phase running."""
    listener = _heard()
    if listener is not None:
        listener.line(text)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """``listener`` hears the phases begun in this context (this thread, and tasks it starts)."""
    token = _listener.set((listener, os.getpid()))
    try:
        yield
    finally:
        _listener.reset(token)
