"""Typed errors that say what was wrong, the offending value, and how to fix it.

The CLI prints ``str(error)`` as one line and exits with status 2, so every message must stand
on its own: where (file, record, key), what (the value), and the fix.
"""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none): what fits in a
    one-line report of an exception raised by a library."""
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


class BaoError(Exception):
    """Base class of the project's input errors.

    Args:
        what: the problem, naming the key, file or record it concerns.
        value: the offending value (echoed with ``repr``); omit when there is none.
        fix: one sentence on how to fix it.
    """

    _NO_VALUE = object()

    def __init__(self, what: str, *, value: object = _NO_VALUE, fix: str = "") -> None:
        self.what = what
        self.value = value
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        text = self.what
        if self.value is not BaoError._NO_VALUE:
            shown = repr(self.value)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            text += f" (got {shown})"
        if self.fix:
            text += f"; {self.fix}"
        return text


class RuleSyntaxError(BaoError):
    """A rule that is not an expression of the Function-Gym grammar."""


class TaskDataError(BaoError):
    """A task file or record that cannot be loaded."""


class EpisodeError(RuntimeError):
    """An environment used out of order (a step before reset or after the episode ended).

    This is a programming error of the caller, not bad user input, hence a RuntimeError.
    """
