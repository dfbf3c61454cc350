"""Every error the plugin raises on purpose, in one tree under :class:`UpskillError`.

::

    UpskillError                       the root: catch this to catch them all
    ├── ConfigError                    a model's configuration (pyproject.toml, an option)
    ├── SettingError (ValueError)      an option or ini setting with a value it cannot have
    ├── SkillFileError                 a SKILL.md or case file, with path:line:col and a fix
    ├── GitError                       --upskill-changed-since: git could not answer
    ├── PreflightError (ValueError)    a setting found unusable before the first request
    ├── WorkspaceError (ValueError)    a path that would leave a workspace
    ├── MergeError (ValueError)        a shard's report that cannot be merged
    ├── TraceError (ValueError)        a trace file the teacher cannot read
    ├── TeacherError                   the teacher gave no usable answer
    ├── GenerateError                  a teaching command stops (``code`` is its exit status)
    ├── MeasureError                   measure(): the run ended with no report
    ├── JudgeError                     the judge gave no usable verdict
    ├── CheckTimeout, CheckCrashed, CheckRaised
    │                                  a check run in the check pool
    └── TrialError                     a trial that could not be scored (``kind``: an ErrorKind)
        └── ProviderError              a request with no scorable reply (``retryable``, ``retry_after``)

Each message names the file, option or model and says what to do. The ``ValueError`` bases are kept
for callers that caught those before the tree existed.
"""

from __future__ import annotations

from pathlib import Path

from pytest_upskill.types import ErrorKind

# Worth another attempt: the server may answer next time. auth and bad_request will not change, nor
# a server that sent a body of gigabytes (nothing a model should answer; retrying would fetch it again).
RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMIT,
        ErrorKind.SERVER,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.DROPPED,
        ErrorKind.BAD_RESPONSE,
        ErrorKind.BAD_USAGE,
    }
)


class UpskillError(Exception):
    """The root of every error the plugin raises on purpose (bad files, settings, providers, checks)."""


class TrialError(UpskillError):
    """A trial that could not be scored: ``kind`` (an :class:`ErrorKind`, as its string) says why,
    the message says what happened. Transport and scoring raise it; the runner turns it into the
    trial's outcome."""

    def __init__(self, kind: str, message: str):
        self.kind = str(kind)  # a plain string: it travels to xdist's controller and into the reports
        super().__init__(message)


class ConfigError(UpskillError):
    """A usage error in model configuration; the message says what to do."""


class SettingError(UpskillError, ValueError):
    """An option or ini setting with a value it cannot have; the message names it and says what it
    must be (pytest's usage error is raised from it where pytest reads the settings)."""


class SkillFileError(UpskillError):
    """A skill file that cannot be used, with where and how to fix it."""

    def __init__(self, path: Path, message: str, fix: str = "", line: int | None = None, col: int | None = None):
        self.path, self.message, self.fix, self.line, self.col = Path(path), message, fix, line, col
        super().__init__(str(self))

    def shown_from(self, base: Path) -> SkillFileError:
        """The same error with its path shown relative to ``base`` where it lies below it."""
        try:
            self.path = self.path.relative_to(base)
        except ValueError:
            pass
        return self

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}" + (f":{self.col}" if self.col is not None else "")
        text = f"{where}: {self.message}"
        return text + (f"\n  fix: {self.fix}" if self.fix else "")


class GitError(UpskillError):
    """git could not answer (no repository, an unknown ref); the message says which and why."""


class PreflightError(UpskillError, ValueError):
    """A setting that cannot work; the message names it and says what to do."""


class ProviderError(TrialError):
    """A request that produced no scorable reply. ``kind`` is one of the ErrorKind members."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None, sent: bool = True):
        super().__init__(kind, message)
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if it did
        self.sent = sent  # False: the runner decided not to send the request at all
        self.retryable = sent and kind in RETRYABLE


class WorkspaceError(UpskillError, ValueError):
    """A path that would leave the workspace."""


class CheckTimeout(UpskillError):
    """The job ran past its time limit; the worker that ran it was killed."""


class CheckCrashed(UpskillError):
    """The job ended its worker (a memory limit, a crash); the message says what is known."""


class CheckRaised(UpskillError):
    """The function raised in the worker: ``kind`` is the exception's type name."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind, self.message = kind, message


class JudgeError(UpskillError):
    """The judge gave no usable verdict: the trial is an error, not a failure."""


class MergeError(UpskillError, ValueError):
    """A report that cannot be merged; the message names the file and what to do."""


class TeacherError(UpskillError):
    """The teacher gave no usable answer (the message says what was wrong with the last one)."""


class TraceError(UpskillError, ValueError):
    """A trace file that cannot be read as a conversation; the message names the file and what to do."""


class MeasureError(UpskillError):
    """``measure()``'s run ended with no report: ``code`` is its exit status, ``tail`` the end of what
    it printed."""

    def __init__(self, code: int, tail: str):
        self.code, self.tail = code, tail
        super().__init__(f"the run ended with exit status {code} and no report:\n{tail}")


class GenerateError(UpskillError):
    """The command stops: the message says why and what to do (exit status ``code``)."""

    def __init__(self, message: str, code: int = 3):
        self.code = code
        super().__init__(message)
