"""Fetching NVIDIA's released Cosmos-Tokenize1 checkpoints from the Hugging Face Hub (docs/design.md#downloads).

Model `<type>` comes from the repo `nvidia/Cosmos-Tokenize1-<type>` into `<checkpoint_dir>/Cosmos-Tokenize1-<type>/`.
huggingface_hub lists the repo (commit, file sizes) and supplies the file URLs and auth headers; each file is then
fetched by vtok's own resumable HTTP downloader (`fetch.HttpDownloader`) into a partial file under `.cache/vtok/`,
checked there (its size against the Hub's listing and, where NVIDIA published one, its MD5) and only then renamed
to its final name, so a file under its final name is always complete. A model whose files all passed gets a small
manifest (the file list), so the next run re-checks it offline and skips it without asking the Hub.

Interruptions: a transfer the network cut is continued with a Range request within the run; one stopped by
Ctrl-C, a killed process or a connection that stays down leaves its partial file, which the next run continues
from where it stopped (huggingface_hub >= 1.18 no longer does that itself, huggingface_hub#4196). The partial
file is named after the file's blob id on the Hub, so bytes of an older version of a file are never continued.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from huggingface_hub import HfApi, get_token, hf_hub_url
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, build_hf_headers

from ..networks.config import MODEL_NAMES, canonical_name
from ..version import __version__
from .fetch import DownloadError, HttpDownloader

REPO_PREFIX = "nvidia/Cosmos-Tokenize1-"
ALLOW_PATTERNS = ("README.md", "model.pt", "mean_std.pt", "config.json", "*.jit")
MANIFEST = Path(".cache") / "vtok" / "complete.json"
PARTIAL_DIR = MANIFEST.parent  # where files are staged until complete and checked
RETRIES = 3  # failed transfer attempts in a row, without progress, before a file is given up for this run
RETRY_WAIT = 1.0  # seconds before the first of those retries, doubling after each

# MD5s of the released files, from NVIDIA's download script. model.pt, config.json and the
# image models are not listed there; those files are checked by size only.
RELEASE_MD5: dict[str, dict[str, str]] = {
    "CV8x8x8-720p": {
        "encoder.jit": "f5834d03645c379bc0f8ad14b9bc0299",
        "decoder.jit": "ff21a63ed817ffdbe4b6841111ec79a8",
        "autoencoder.jit": "7f658580d5cf617ee1a1da85b1f51f0d",
        "mean_std.pt": "f07680ad7eefae57d698778e2a0c7c96",
    },
    "CV4x8x8-360p": {
        "encoder.jit": "fe3a7193defcb2db0b849b6df480b5e6",
        "decoder.jit": "7573744ec14cb1b2abdf9c80318b7224",
        "autoencoder.jit": "0690ff725700128424d082b44a1eda08",
    },
    "DV8x16x16-720p": {
        "encoder.jit": "95186b0410346a3f0cf250b76daec452",
        "decoder.jit": "f0c8a9d992614a43e7ce24ebfc901e26",
        "autoencoder.jit": "606b8585b637f06057725cbb67036ae6",
    },
    "DV4x8x8-360p": {
        "encoder.jit": "7af30a0223b2984d9d27dd3054fcd7af",
        "decoder.jit": "f9a7d4bd24e4d2ee210cfd5f21550ce8",
        "autoencoder.jit": "ff8802dc4497be60dc24a8f692833eed",
    },
}


@dataclass
class ModelResult:
    """What happened to one model: status is "done" (files fetched), "skipped" (already complete) or "failed"."""

    name: str
    folder: Path
    status: str
    detail: str = ""
    downloaded: list[str] = field(default_factory=list)


@dataclass
class DownloadReport:
    """One result per requested model, in request order."""

    results: list[ModelResult] = field(default_factory=list)

    def by_status(self, status: str) -> list[ModelResult]:
        return [r for r in self.results if r.status == status]

    @property
    def exit_code(self) -> int:
        return 1 if self.by_status("failed") else 0

    def summary(self) -> str:
        done, skipped, failed = (self.by_status(s) for s in ("done", "skipped", "failed"))
        if not done and not failed:
            return f"nothing to do: all {len(skipped)} models are already complete"
        line = f"checkpoints: {len(done)} done, {len(skipped)} skipped (already complete), {len(failed)} failed"
        return "\n".join([line] + [f"  failed {r.name}: {r.detail}" for r in failed])


class _ModelFailed(Exception):
    """Ends one model's download with a one-line reason."""


def repo_id(name: str) -> str:
    """The Hugging Face repo of a model, e.g. nvidia/Cosmos-Tokenize1-CV8x8x8-720p."""
    return REPO_PREFIX + canonical_name(name)


def model_folder(checkpoint_dir: str | Path, name: str) -> Path:
    """Where a model's files go: `<checkpoint_dir>/Cosmos-Tokenize1-<type>/`, the layout vtok and NVIDIA load."""
    return Path(checkpoint_dir) / f"Cosmos-Tokenize1-{canonical_name(name)}"


def md5sum(path: Path, chunk_size: int = 1 << 23) -> str:
    """Hex MD5 of a file, read in chunks (the released files are up to ~1.5 GB)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def file_problem(path: Path, size: int | None, md5: str | None) -> str | None:
    """Why `path` is not the expected file (missing, wrong size, MD5 mismatch), or None when it is."""
    if not path.is_file():
        return "missing"
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual} bytes, expected {size}"
    if md5 is not None and (got := md5sum(path)) != md5:
        return f"MD5 mismatch (got {got}, expected {md5})"
    return None


def download_checkpoints(
    names: Iterable[str] | None = None,
    checkpoint_dir: str | Path = "checkpoints",
    *,
    md5s: Mapping[str, Mapping[str, str]] = RELEASE_MD5,
    endpoint: str | None = None,
    token: str | bool | None = None,
    log: Callable[[str], None] = print,
) -> DownloadReport:
    """Fetch the named models (default: all 8) into `checkpoint_dir`; one model's failure never stops the others.

    Names may be in any form `canonical_name` accepts; an unknown one raises ValueError before anything is
    fetched. `md5s` maps model name to {file: md5}; `endpoint` and `token` default to huggingface_hub's own
    (HF_ENDPOINT, HF_TOKEN or the saved login).
    """
    names = MODEL_NAMES if names is None else [names] if isinstance(names, str) else names
    wanted = list(dict.fromkeys(canonical_name(n) for n in names))
    if not wanted:
        raise ValueError("no tokenizer types given")
    report = DownloadReport()
    for name in wanted:
        result = download_model(
            name, model_folder(checkpoint_dir, name), md5s=md5s.get(name, {}), endpoint=endpoint, token=token, log=log
        )
        report.results.append(result)
    return report


def download_model(
    name: str,
    folder: Path,
    *,
    md5s: Mapping[str, str],
    endpoint: str | None = None,
    token: str | bool | None = None,
    log: Callable[[str], None] = print,
) -> ModelResult:
    """Fetch one model into `folder` unless it is already complete; errors become a failed result."""
    say = lambda msg: log(f"{name}: {msg}")  # noqa: E731
    if (files := _complete_offline(folder, md5s, say)) is not None:
        return _result(name, folder, "skipped", f"already complete ({_count(files, md5s)}), skipped", [], log)
    repo = repo_id(name)
    say(f"fetching {repo} into {folder}")
    try:
        files, downloaded = _fetch(repo, folder, md5s, endpoint, token, say)
    except _ModelFailed as err:
        return _result(name, folder, "failed", str(err), [], log)
    except DownloadError as err:
        reason = (
            _status_reason(err.status, err.url, repo, endpoint, token)
            if err.status is not None
            else f"download failed: {err.reason}"
        )
        return _result(name, folder, "failed", reason, [], log)
    except Exception as err:  # network, Hub and file-system errors of one model; the next model still runs
        http = _cause_of_type(err, HfHubHTTPError)
        reason = (
            _http_reason(http, repo, endpoint, token) if http is not None else f"download failed: {_root_cause(err)}"
        )
        return _result(name, folder, "failed", reason, [], log)
    _write_manifest(folder, repo, files)
    if not downloaded:
        return _result(
            name, folder, "skipped", f"already complete ({_count(files, md5s)}, checked with the Hub), skipped", [], log
        )
    return _result(name, folder, "done", f"done ({_count(files, md5s)})", downloaded, log)


def _fetch(
    repo: str,
    folder: Path,
    md5s: Mapping[str, str],
    endpoint: str | None,
    token: str | bool | None,
    log: Callable[[str], None],
) -> tuple[dict[str, int | None], list[str]]:
    """Download every wanted file of `repo`, checking each; returns {file: size} and the files fetched."""
    info = HfApi(endpoint=endpoint).model_info(repo, files_metadata=True, token=token)
    wanted = [s for s in info.siblings or [] if any(fnmatchcase(s.rfilename, p) for p in ALLOW_PATTERNS)]
    files = {s.rfilename: s.size for s in wanted}
    if not files:
        raise _ModelFailed(f"{repo} lists none of {', '.join(ALLOW_PATTERNS)} (revision {info.sha})")
    if absent := sorted(set(md5s) - set(files)):
        raise _ModelFailed(f"{repo} has no {', '.join(absent)} (revision {info.sha}); is this the released repo?")
    headers = build_hf_headers(token=token, library_name="vtok", library_version=__version__)
    hub = endpoint.rstrip("/") if endpoint else None
    downloaded = []
    for sibling in sorted(wanted, key=lambda s: (s.rfilename == "model.pt", s.rfilename)):  # the big model.pt last
        filename, size, md5 = sibling.rfilename, sibling.size, md5s.get(sibling.rfilename)
        path = folder / filename
        if path.exists():
            if (problem := file_problem(path, size, md5)) is None:
                continue
            log(f"{filename}: {problem}; removed it, downloading it again")
            path.unlink()
        part = _partial_file(folder, filename, sibling.blob_id or info.sha)
        url = hf_hub_url(repo, filename, revision=info.sha, endpoint=hub)
        _download_file(url, part, size, headers, filename, log)
        if problem := file_problem(part, size, md5):
            log(f"{filename}: {problem}; removed it, downloading it again")
            part.unlink(missing_ok=True)
            _download_file(url, part, size, headers, filename, log)
            if problem := file_problem(part, size, md5):
                part.unlink(missing_ok=True)
                raise _ModelFailed(f"{filename}: {problem} again after a fresh download; removed it")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, path)
        downloaded.append(filename)
    return files, downloaded


def _partial_file(folder: Path, filename: str, version: str | None) -> Path:
    """Where `filename` is staged, named after its version on the Hub; staged bytes of other versions are removed."""
    tag = re.sub(r"[^0-9A-Za-z]", "", version or "")[:16]
    part = folder / PARTIAL_DIR / (f"{filename}.{tag}.part" if tag else f"{filename}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    stale = re.compile(re.escape(Path(filename).name) + r"(\.[0-9A-Za-z]+)?\.part")
    for other in part.parent.iterdir():
        if other.name != part.name and stale.fullmatch(other.name) and other.is_file():
            other.unlink()
    return part


def _download_file(
    url: str, part: Path, size: int | None, headers: Mapping[str, str], filename: str, log: Callable[[str], None]
) -> None:
    """Fetch `url` into `part`, continuing what it holds; a broken transfer is resumed, an HTTP refusal raised."""
    if size is not None and _size(part) > size:
        part.unlink()
    if size is not None and _size(part) == size:
        return
    if have := _size(part):
        log(f"{filename}: resuming the partial download at byte {have}" + (f" of {size}" if size else ""))
    downloader = HttpDownloader(headers=headers)
    failures = 0
    while True:
        have = _size(part)
        try:
            downloader.fetch(url, part)
            if size is None or _size(part) >= size:
                return
            raise DownloadError(url, f"transfer ended after {_size(part)} of {size} bytes")
        except DownloadError as err:
            transient = err.status is None or err.status in (408, 429) or err.status >= 500
            failures = 0 if _size(part) > have else failures + 1
            if not (err.retryable and transient) or failures > RETRIES:
                raise
            wait = RETRY_WAIT * 2 ** (failures - 1) if failures else 0.0
            log(
                f"{filename}: transfer interrupted at byte {_size(part)} ({err.reason}); "
                + (f"retrying in {wait:g} s" if wait else "resuming")
            )
            time.sleep(wait)


def _size(path: Path) -> int:
    """Size of a file in bytes, 0 when there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _complete_offline(
    folder: Path, md5s: Mapping[str, str], log: Callable[[str], None]
) -> dict[str, int | None] | None:
    """The manifest's {file: size} when every file it lists is present and checks out; else None.

    A file that fails its MD5 is removed (a resumed download must not keep it) and the manifest with it.
    """
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    complete = True
    for filename, size in files.items():
        if problem := file_problem(folder / filename, size, md5s.get(filename)):
            complete = False
            if problem != "missing":
                log(f"{filename}: {problem}; removed it, downloading it again")
                (folder / filename).unlink(missing_ok=True)
    if not complete:
        (folder / MANIFEST).unlink(missing_ok=True)
        return None
    return files


def _write_manifest(folder: Path, repo: str, files: Mapping[str, int | None]) -> None:
    """Record the checked file list, atomically, so a later run can skip this model offline."""
    path = folder / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"repo_id": repo, "files": dict(files)}, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _count(files: Mapping[str, object], md5s: Mapping[str, str]) -> str:
    checked = sum(f in md5s for f in files)
    return f"{len(files)} files, {checked} MD5-verified" if checked else f"{len(files)} files"


def _result(
    name: str, folder: Path, status: str, detail: str, downloaded: list[str], log: Callable[[str], None]
) -> ModelResult:
    log(f"{name}: {detail}" if status != "failed" else f"{name}: failed: {detail}")
    return ModelResult(name, folder, status, detail, downloaded)


def _http_reason(err: HfHubHTTPError, repo: str, endpoint: str | None, token: str | bool | None) -> str:
    """One line saying what the Hub refused (through huggingface_hub) and what to do about it."""
    status = err.response.status_code if err.response is not None else None
    url = str(err.response.url) if err.response is not None else repo
    return _status_reason(
        status,
        url,
        repo,
        endpoint,
        token,
        gated=isinstance(err, GatedRepoError),
        missing=isinstance(err, RepositoryNotFoundError),
    )


def _status_reason(
    status: int | None,
    url: str,
    repo: str,
    endpoint: str | None,
    token: str | bool | None,
    gated: bool = False,
    missing: bool = False,
) -> str:
    """One line saying what the Hub refused with HTTP `status` for `url` and what to do about it."""
    hub = (endpoint or hf_constants.ENDPOINT).rstrip("/")
    page = f"{hub}/{repo}"
    if gated or status in (401, 403):
        has_token = bool(token) if isinstance(token, str) else token is not False and get_token() is not None
        if not has_token:
            return (
                f"the Hub refused access (HTTP {status}) and no token was found: accept the license at {page} "
                "while logged in, then run `hf auth login` (formerly `huggingface-cli login`) or set HF_TOKEN"
            )
        return (
            f"the Hub refused access with your token (HTTP {status}): accept the license at {page} with that "
            "account, or use a token of an account that has (HF_TOKEN or `hf auth login`)"
        )
    if missing:
        return f"{repo} not found on {hub} (HTTP {status})"
    return f"the Hub answered HTTP {status} for {url}"


def _cause_of_type(err: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """`err` or the first exception in its `__cause__` chain that is a `kind` (huggingface_hub wraps HTTP errors)."""
    while err is not None and not isinstance(err, kind):
        err = err.__cause__
    return err


def _root_cause(err: BaseException) -> str:
    """`Type: first line` of the innermost cause, which names the network problem rather than its wrappers."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
