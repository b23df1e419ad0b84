"""Run one job per file with a progress bar: a bad file is named and skipped, never the end of the run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..io.errors import MediaError

# Errors that concern one file (unreadable media, a size the model cannot take, out of memory on one
# huge video); anything else is a bug and stops the run.
FILE_ERRORS = (MediaError, ValueError, RuntimeError, OSError)


@dataclass
class FileReport:
    """What happened to each file."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self, what: str) -> str:
        line = f"{what}: {len(self.done)} done, {len(self.skipped)} skipped (already done), {len(self.failed)} failed"
        return "\n".join([line] + [f"  failed {path}: {reason}" for path, reason in self.failed])

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def run_per_file(files: Sequence[Path], job: Callable[[Path], bool], what: str) -> FileReport:
    """Call `job(path)` for each file (it returns False when it skipped the file as already done)."""
    report = FileReport()
    with tqdm(files, desc=what, unit="file", dynamic_ncols=True) as bar:
        for path in bar:
            bar.set_postfix_str(path.name, refresh=False)
            try:
                (report.done if job(path) else report.skipped).append(path)
            except FILE_ERRORS as err:
                reason = err.reason if isinstance(err, MediaError) else str(err).splitlines()[0]
                report.failed.append((path, reason))
                tqdm.write(f"vtok: skipped {path}: {reason}")
    return report
