"""Run one job per file with a progress bar: a bad file is named and skipped, never the end of the run.

Two things do end it, each with one line that says what was kept: a full disk (every later file would fail the
same way), raised as the WriteError, and Ctrl-C, raised as Interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..io.errors import MediaError, WriteError, is_storage_full

# Errors that concern one file (unreadable media, a size the model cannot take, out of memory on one
# huge video); anything else is a bug and stops the run.
FILE_ERRORS = (MediaError, ValueError, RuntimeError, OSError)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the command had finished and kept: the `vtok` command prints it in one line."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


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

    def kept(self, total: int) -> str:
        """E.g. '3 of 10 files finished (1 skipped as already done, 1 failed)'."""
        extra = [f"{n} {label}" for n, label in ((len(self.skipped), "skipped"), (len(self.failed), "failed")) if n]
        return f"{len(self.done)} of {total} files finished" + (f" ({', '.join(extra)})" if extra else "")


def run_per_file(
    files: Sequence[Path], job: Callable[[Path], bool], what: str, resume: str = "", report: FileReport | None = None
) -> FileReport:
    """Call `job(path)` for each file (it returns False when it skipped the file as already done).

    `resume` says how to continue after Ctrl-C (e.g. 'rerun the same command to continue'); `report` is filled in
    as files finish (so a caller that catches Interrupted still has it)."""
    report = FileReport() if report is None else report
    with tqdm(files, desc=what, unit="file", dynamic_ncols=True) as bar:
        for path in bar:
            bar.set_postfix_str(path.name, refresh=False)
            try:
                (report.done if job(path) else report.skipped).append(path)
            except KeyboardInterrupt:
                raise Interrupted(
                    f"{what} stopped during {path}, which was not written; {report.kept(len(files))} and kept"
                    + (f"; {resume}" if resume else ""),
                    path,
                ) from None
            except WriteError as err:
                if not is_storage_full(err):
                    report.failed.append((path, str(err)))
                    tqdm.write(f"vtok: skipped {path}: {err}")
                    continue
                err.note = f"{err.note or 'nothing was written under that name'}; {report.kept(len(files))} and kept"
                raise
            except FILE_ERRORS as err:
                reason = err.reason if isinstance(err, MediaError) else str(err).splitlines()[0]
                report.failed.append((path, reason))
                tqdm.write(f"vtok: skipped {path}: {reason}")
    return report
