"""Phases of long work, reported to whoever listens: the library says what it is doing, the CLI shows it.

A library function wraps a long step in :func:`phase` (``with phase("packing"): ...``; with
``total=`` it may also :meth:`Phase.advance` through counted steps). Without a listener this
costs nothing and shows nothing. The CLI installs one (:func:`listening`) that draws the phases
running now with their elapsed time, ticking while a solver backend runs in C code or in a child
process (the CLI's listener is ``rich``; this module imports no display library).

A listener also hears the progress lines the library prints (:func:`note`), so that a display can
show the last one beside the phase it belongs to.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Listener", "Phase", "phase", "note", "listening"]


class Listener(Protocol):
    """What a display implements: a phase began (with its total of steps, or None), advanced, ended;
    a progress line was printed."""

    def begin(self, key: int, name: str, total: int | None) -> None: ...

    def advance(self, key: int, steps: int) -> None: ...

    def end(self, key: int) -> None: ...

    def line(self, text: str) -> None: ...


_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("energyopt_progress", default=None)
_keys = iter(range(1, 1 << 62))


class Phase:
    """A phase under way; :meth:`advance` counts its steps (when it was given a total)."""

    def __init__(self, listener: Listener | None, key: int) -> None:
        self._listener, self._key = listener, key

    def advance(self, steps: int = 1) -> None:
        if self._listener is not None:
            self._listener.advance(self._key, steps)


@contextlib.contextmanager
def phase(name: str, total: int | None = None) -> Iterator[Phase]:
    """The block is the phase ``name`` (e.g. ``"solve: exact MILP with highs"``), with ``total``
    steps if it counts them."""
    listener = _listener.get()
    if listener is None:
        yield Phase(None, 0)
        return
    key = next(_keys)
    listener.begin(key, name, total)
    try:
        yield Phase(listener, key)
    finally:
        listener.end(key)


def note(text: str) -> None:
    """A progress line was printed: the listener may show it beside the phase running."""
    listener = _listener.get()
    if listener is not None:
        listener.line(text)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """``listener`` hears the phases begun in this context (this thread, and tasks it starts)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
