"""The one error family: every failure a user can act on is an AdvisorError with a hint."""

from __future__ import annotations


class AdvisorError(Exception):
    """A failure the user can act on: a message and an optional hint, shown without a trace."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class RuleError(AdvisorError):
    """A rules file is missing, malformed or fails validation."""


class InputError(AdvisorError):
    """Input that cannot be used at all (single bad rows are quarantined instead)."""


class UnreadableFile(InputError):
    """A whole file the reader cannot read as its format: quarantined, and the run goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason  # the quarantine row's reason: the file is its source_file


class Interrupted(BaseException):
    """Ctrl-C, with what the interrupted run kept (one line for the user; exit 130). Like
    KeyboardInterrupt, not an Exception: no `except Exception` on the way may swallow it."""

    def __init__(self, kept: str) -> None:
        super().__init__(kept)
        self.kept = kept
