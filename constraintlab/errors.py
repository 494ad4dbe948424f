"""Errors that constraintlab raises on purpose.

Everything a user can cause (bad data, bad settings, a store built with other settings) is a
:class:`ConstraintlabError`; the CLI turns it into a message on stderr and exit code 2, never a
traceback. Anything else escaping the library is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConstraintlabError(Exception):
    """Base class for errors caused by the user's input or settings (CLI exit code 2)."""


@dataclass(frozen=True)
class Problem:
    """One problem with one input record.

    Attributes
    ----------
    source : str
        File path, or ``<records>`` / ``<dataset>`` for in-memory data.
    line : int
        1-based line of the record in ``source`` (row number for Parquet and in-memory data).
    message : str
        What is wrong, phrased so the user can fix it.
    """

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class InputError(ConstraintlabError):
    """The dataset cannot be read; ``problems`` lists every problem found (in file order)."""

    def __init__(self, problems: list[Problem], *, max_shown: int = 20) -> None:
        self.problems = list(problems)
        shown = [str(p) for p in self.problems[:max_shown]]
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more problem{'s' if more > 1 else ''}")
        super().__init__("\n".join(shown))


class ConfigError(ConstraintlabError):
    """A setting is invalid (bad value, unknown key, inconsistent combination)."""


class StoreMismatchError(ConstraintlabError):
    """An existing feature store was built with other settings or from other data."""


@dataclass(frozen=True)
class Finding(Problem):
    """A record that was read but is unusable (left out) or odd (used): a :class:`Problem` with
    a reason code, so reports can count and gate on it.

    Attributes
    ----------
    source, line, message
        As for :class:`Problem`; ``str(finding)`` is ``source:line: message``.
    code : str
        Machine-readable reason, e.g. ``"blank_target"``, ``"unknown_role"``, ``"too_large"``
        (the io readers document the full list in ``constraintlab.io.reader``).
    index : int or None
        0-based record index in file order (``Example.index`` of the record), when known.
    severity : str
        ``"invalid"``: the record is excluded from the analysis. ``"note"``: the record is used;
        the finding only says it is odd.
    """

    code: str = "invalid"
    index: int | None = None
    severity: str = "invalid"

    def to_dict(self) -> dict[str, str | int | None]:
        """``{"source", "line", "index", "code", "severity", "message"}``: one finding as
        report.json, examples tables and the terminal summary show it."""
        return {"source": self.source, "line": self.line, "index": self.index,
                "code": self.code, "severity": self.severity, "message": self.message}
