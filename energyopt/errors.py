"""Exception hierarchy. Every error a user can cause is an :class:`EnergyoptError`.

The CLI turns any of them into a one-line message and exit code 2.
"""

import re

__all__ = [
    "EnergyoptError",
    "DataError",
    "FitError",
    "InfeasibleError",
    "SolverNotAvailableError",
    "EXCERPT_CHARS",
    "excerpt",
    "key_text",
    "one_line",
    "unknown_key_hint",
]

#: the most characters of a user's value an error message quotes (longer ones end in an ellipsis)
EXCERPT_CHARS = 80
_BARE_KEY = re.compile(r"[A-Za-z0-9_.+*/^-]{1,80}")


class EnergyoptError(Exception):
    """Base class of every error that energyopt raises on purpose."""


class DataError(EnergyoptError, ValueError):
    """An input file or table is malformed: names the file, the row or key, and what was expected."""


class FitError(EnergyoptError):
    """A regression model could not be fitted, or failed the R² gate."""


class InfeasibleError(EnergyoptError):
    """No plan meets every requirement (raised only where a caller asks for a plan or nothing)."""


class SolverNotAvailableError(EnergyoptError):
    """The requested solver backend is not installed or cannot run in this process."""


def excerpt(value: object, limit_chars: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` for an error message: on one line (``repr`` escapes line breaks and other
    control characters) and at most ``limit_chars`` characters, cut with an ellipsis (…), so that a
    wrong file (a JSON array, random bytes) never dumps kilobytes into a one-line error."""
    text = repr(value)
    return text if len(text) <= limit_chars else text[: limit_chars - 1] + "…"


def key_text(key: object) -> str:
    """A key (a fleet pool's or LLM's name, a model file's key) as an error message names it: as is
    where it is a short plain name, else quoted like :func:`excerpt` (one line, capped)."""
    return key if isinstance(key, str) and _BARE_KEY.fullmatch(key) else excerpt(key)


def one_line(text: str, limit_chars: int = EXCERPT_CHARS) -> str:
    """A library's message (a parser's complaint) for an error message: its whitespace, line breaks
    included, collapsed to single spaces, and cut with an ellipsis past ``limit_chars``."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit_chars else flat[: limit_chars - 1] + "…"


def unknown_key_hint(key: object, known: tuple[str, ...] | list[str]) -> str:
    """What to say after "unknown key K": ``; did you mean X?`` for the closest known key
    (:func:`difflib.get_close_matches`), else the known keys."""
    import difflib

    near = difflib.get_close_matches(str(key), list(known), n=1)
    return f"; did you mean {near[0]}?" if near else f"; known keys: {one_line(', '.join(known), 240)}"
