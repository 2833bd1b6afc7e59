"""What happened to each input of a run: status (:class:`aptviz.errors.Status`), failure, the run report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aptviz.compute.stats import ImageStats
from aptviz.errors import Status, exit_code

__all__ = ["Failure", "JobResult", "RunReport"]


@dataclass(frozen=True)
class Failure:
    """Why one input failed: one line for the user, the traceback for ``-v``."""

    error: str
    detail: str | None = None

    def __str__(self) -> str:
        return self.error


@dataclass
class JobResult:
    """What happened to one input."""

    path: Path
    name: str | None  # output folder below OUTPUT (None when the input was never a job)
    status: Status
    stats: ImageStats | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.status is not Status.failed

    @property
    def error(self) -> str | None:
        return None if self.failure is None else self.failure.error

    @property
    def detail(self) -> str | None:
        return None if self.failure is None else self.failure.detail

    @classmethod
    def failed(cls, path, error: str, detail: str | None = None, name: str | None = None) -> JobResult:
        return cls(Path(path), name, Status.failed, failure=Failure(error, detail))


@dataclass
class RunReport:
    """The outcome of :func:`aptviz.run`: every result, and what went wrong around them.

    Examples
    --------
    >>> report = RunReport(Path("out"), jobs=1)
    >>> report.add(JobResult.failed("x.jpg", "file not found"))
    >>> report.return_code, [str(f.failure) for f in report.failures]
    (1, ['file not found'])
    """

    output: Path
    jobs: int = 0  # images found (inputs that failed before becoming a job are not counted)
    results: list[JobResult] = field(default_factory=list)  # in completion order
    errors: list[str] = field(default_factory=list)  # not about one image: summary or plot could not be written
    notices: list[str] = field(default_factory=list)  # informational, once each (batch figures skipped); exit code 0
    interrupted: bool = False
    stop_signal: int | None = None  # the signal that interrupted the run (SIGINT: Ctrl-C, SIGTERM)
    complete: int | None = None  # interrupted: this run's images the summary describes as done (workers included)
    plot: Path | None = None  # the retention plot, when written in this run

    def add(self, result: JobResult) -> None:
        self.results.append(result)

    @property
    def images(self) -> list[JobResult]:
        """Results with stats (done or skipped), in completion order."""
        return [r for r in self.results if r.ok]

    @property
    def failures(self) -> list[JobResult]:
        return [r for r in self.results if not r.ok]

    def count(self, status: Status) -> int:
        return sum(r.status is status for r in self.results)

    @property
    def return_code(self) -> int:
        """0 all succeeded, 1 something failed, 130 interrupted by Ctrl-C, 143 stopped by SIGTERM."""
        return exit_code(bool(self.failures or self.errors), self.interrupted, self.stop_signal)
