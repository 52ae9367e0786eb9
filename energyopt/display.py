"""The CLI's live progress display on stderr (``rich``): one row per phase running now
(:mod:`energyopt.progress`), each with a spinner, its elapsed time (ticking while a solver backend
runs in C code or in a child process), a bar and the time left where the phase counts its steps,
its status where it shows one (a bound, a plan's gap, a solver's incumbent), and the last progress
line printed inside it. The progress lines themselves still print, above
the rows; the rows vanish when their phase ends, so what stays on the terminal is the log.

``rich`` is imported only when a display is made (a terminal on stderr, or ``--progress``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

__all__ = ["RichListener", "LAST_LINE_CHARS"]

#: characters of the last progress line shown beside a phase
LAST_LINE_CHARS = 70
#: the display's own thread draws it this many times a second
REFRESH_PER_S = 4
#: a phase begun draws the display at once where it was last drawn so from the working thread this long
#: ago [s] (rich would draw it at every phase begun, 2-4 ms each in the thread doing the work); the
#: display's own thread shows it within 1 / REFRESH_PER_S anyway
DRAW_EVERY_S = 1.0


class RichListener:
    """A :class:`energyopt.progress.Listener` drawing with ``rich.progress`` on stderr; a context
    manager (the display runs inside the block). ``force``: draw even where stderr is no terminal."""

    def __init__(self, force: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TimeElapsedColumn
        from rich.table import Column
        from rich.text import Text

        class BarIfCounted(BarColumn):
            def render(self, task: Any) -> Any:
                return super().render(task) if task.total is not None else Text("")

        class CountIfCounted(ProgressColumn):
            def render(self, task: Any) -> Any:
                if task.total is None:
                    return Text("")
                left = task.time_remaining
                eta = "" if left is None or not task.completed else f", ~{_clock(left)} left"
                return Text(f"{int(task.completed)}/{int(task.total)}{eta}", style="progress.download")

        class Clipped(ProgressColumn):
            """Text on one line, cut with an ellipsis where the terminal is too narrow (the spinner,
            the elapsed time, the bar and the count keep their width)."""

            def __init__(self, *fields: tuple[str, str]) -> None:
                super().__init__(table_column=Column(overflow="ellipsis"))
                self.fields = fields

            def render(self, task: Any) -> Any:
                text = Text(no_wrap=True, overflow="ellipsis")
                for name, style in self.fields:
                    value = task.description if name == "description" else task.fields.get(name, "")
                    if value:
                        text.append(("  " if text else "") + value, style=style)
                return text

        class Drawn(Progress):
            drawn_at = -float("inf")

            def refresh(self) -> None:
                now = time.monotonic()
                if now - self.drawn_at >= DRAW_EVERY_S:
                    self.drawn_at = now
                    super().refresh()

        def fixed() -> Any:
            return Column(no_wrap=True)

        self.console = Console(stderr=True, force_terminal=True if force else None)
        self.progress = Drawn(
            SpinnerColumn(table_column=fixed()), Clipped(("description", "")), TimeElapsedColumn(table_column=fixed()),
            BarIfCounted(bar_width=20, table_column=fixed()), CountIfCounted(table_column=fixed()),
            Clipped(("status", ""), ("last", "dim")),
            console=self.console, transient=True, redirect_stdout=False, redirect_stderr=True,
            refresh_per_second=REFRESH_PER_S,
        )
        self._tasks: dict[int, Any] = {}  # phase key -> rich task id, in the order begun

    def __enter__(self) -> RichListener:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, key: int, name: str, total: int | None) -> None:
        self._tasks[key] = self.progress.add_task(name, total=total, last="", status="")

    def advance(self, key: int, steps: int) -> None:
        if key in self._tasks:
            self.progress.advance(self._tasks[key], steps)

    def status(self, key: int, text: str) -> None:
        task = self._tasks.get(key)  # may come from a solver's thread, while the phase ends
        if task is not None:
            with contextlib.suppress(KeyError):
                self.progress.update(task, status=_cut(text))

    def end(self, key: int) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            self.progress.remove_task(task)

    def line(self, text: str) -> None:
        if self._tasks:  # shown beside the innermost phase running
            self.progress.update(next(reversed(self._tasks.values())), last=_cut(text))


def _cut(text: str) -> str:
    return text if len(text) <= LAST_LINE_CHARS else text[: LAST_LINE_CHARS - 1] + "…"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
