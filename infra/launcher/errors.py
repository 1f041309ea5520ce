"""The one error the launcher raises: what went wrong, in words, plus the log that shows why."""

from __future__ import annotations


class LaunchError(Exception):
    """A mesh could not be started, checked or stopped; `log` is the relevant output, if any."""

    def __init__(self, message: str, *, log: str = "", program: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log = log
        self.program = program
