"""`vtok download-checkpoints` against a loopback Hugging Face Hub: real huggingface_hub, real HTTP, real files.

The fake Hub (a threading http.server started by the test) answers `GET /api/models/<repo>` (commit and file
listing, asked through huggingface_hub) and `HEAD`/`GET /<repo>/resolve/<rev>/<file>` (X-Repo-Commit, ETag,
Content-Length; GET honours `Range`), the file downloads vtok makes itself. A second server on another port plays
the CDN the Hub redirects to. The Hub can refuse a repo (401/403), cut a transfer half-way once, stall one
half-way until the test releases it, or serve corrupted bytes, to exercise the failure paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

from vtok.download.checkpoints import MANIFEST, RELEASE_MD5, download_checkpoints  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
VIDEO_FILES = ("README.md", "config.json", "encoder.jit", "decoder.jit", "autoencoder.jit", "model.pt")


def fake_files(name: str) -> dict[str, bytes]:
    """A small stand-in for a release repo: the wanted files plus ones the download must leave alone."""
    files = {f: f"{name}/{f}:".encode() * (4000 if f == "model.pt" else 50) for f in VIDEO_FILES}
    if name == "CV8x8x8-720p":
        files["mean_std.pt"] = b"mean-std" * 100
    files[".gitattributes"] = b"*.jit filter=lfs\n"
    files["extra/notes.bin"] = b"not part of the release layout"
    return files


class FakeHub:
    """The state behind the loopback server: repos, and the faults to inject."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.denied: dict[str, tuple[int, str | None, bool]] = {}  # repo -> (status, X-Error-Code, api too)
        self.cut_once: set[tuple[str, str]] = set()
        self.stall_once: dict[tuple[str, str], int] = {}  # (repo, file) -> bytes to send before hanging
        self.stalled = threading.Event()  # set while a stalled transfer hangs
        self.release = threading.Event()  # ends the hanging transfer (its connection closes)
        self.redirect: set[tuple[str, str]] = set()  # files served through a same-origin hop, then the CDN
        self.corrupt: dict[tuple[str, str], int] = {}  # (repo, file) -> how many more GETs serve bad bytes
        self.on_get: Callable[[str, str], None] | None = None  # called with (repo, file) as a file GET starts
        self.requests: list[tuple[str, str, str | None, str | None, str]] = []  # (+ Authorization, server)
        self.lock = threading.Lock()
        self.url = ""
        self.cdn_url = ""

    def add(self, name: str, files: dict[str, bytes] | None = None) -> str:
        repo = f"nvidia/Cosmos-Tokenize1-{name}"
        self.repos[repo] = fake_files(name) if files is None else files
        return repo

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def md5s(self) -> dict[str, dict[str, str]]:
        """An MD5 table like RELEASE_MD5 but for the served files (the .jit files and mean_std.pt)."""
        return {
            repo.removeprefix("nvidia/Cosmos-Tokenize1-"): {
                f: hashlib.md5(data).hexdigest()
                for f, data in files.items()
                if f.endswith(".jit") or f == "mean_std.pt"
            }
            for repo, files in self.repos.items()
        }

    def gets(self, repo: str, filename: str, server: str = "hub") -> list[tuple[str, str, str | None, str | None, str]]:
        """The file downloads (GET requests) of one file of one repo that reached `server` ("hub" or "cdn")."""
        return [
            r
            for r in self.requests
            if r[0] == "GET"
            and r[1].startswith(f"/{repo}/resolve/")
            and r[1].endswith("/" + filename)
            and r[4] == server
        ]


class HubHandler(BaseHTTPRequestHandler):
    hub: FakeHub
    role: str = "hub"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        hub = self.hub
        path = unquote(urlsplit(self.path).path)
        with hub.lock:
            hub.requests.append(
                (self.command, path, self.headers.get("Range"), self.headers.get("Authorization"), self.role)
            )
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._api(hub, "/".join(parts[2:4]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(hub, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        self._error(404, "RepoNotFound")

    def _api(self, hub: FakeHub, repo: str) -> None:
        if repo not in hub.repos:
            return self._error(404, "RepoNotFound")
        if repo in hub.denied and hub.denied[repo][2]:
            return self._error(*hub.denied[repo][:2])
        siblings = [
            {"rfilename": f, "size": len(data), "blobId": hashlib.sha1(data).hexdigest()}
            for f, data in hub.repos[repo].items()
        ]
        payload = json.dumps(
            {"id": repo, "sha": hub.commit(repo), "private": False, "gated": "manual", "siblings": siblings}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _resolve(self, hub: FakeHub, repo: str, revision: str, filename: str, body: bool) -> None:
        if repo not in hub.repos:
            return self._error(404, "RepoNotFound")
        if repo in hub.denied:
            return self._error(*hub.denied[repo][:2])
        if revision not in ("main", hub.commit(repo)) or filename not in hub.repos[repo]:
            return self._error(404, "EntryNotFound")
        if self.role == "hub" and (repo, filename) in hub.redirect:
            moved = urlsplit(self.path).query == "moved"
            self.send_response(302 if moved else 307)
            self.send_header("Location", f"{hub.cdn_url}{self.path}" if moved else f"{self.path}?moved")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if body and hub.on_get is not None:
            hub.on_get(repo, filename)
        data = hub.repos[repo][filename]
        start = 0
        if body and (spec := self.headers.get("Range")):
            start = int(spec.removeprefix("bytes=").split("-")[0])
        with hub.lock:
            cut = body and not start and (repo, filename) in hub.cut_once
            if cut:
                hub.cut_once.discard((repo, filename))
            stall = hub.stall_once.pop((repo, filename), None) if body and not start else None
            bad = body and hub.corrupt.get((repo, filename), 0) > 0
            if bad:
                hub.corrupt[(repo, filename)] -= 1
        if bad:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", hub.commit(repo))
        self.send_header("ETag", f'"{hashlib.sha256(hub.repos[repo][filename]).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Disposition", f'attachment; filename="{filename.rsplit("/", 1)[-1]}"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if cut:  # promise the whole file, send half, hang up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if stall is not None:  # promise the whole file, send the first `stall` bytes, hang until released
            self.wfile.write(data[:stall])
            self.wfile.flush()
            hub.stalled.set()
            hub.release.wait(60)
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def _error(self, status: int, code: str | None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def hub():
    state = FakeHub()
    servers = []
    for role in ("hub", "cdn"):
        handler = type("Handler", (HubHandler,), {"hub": state, "role": role})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
    state.url, state.cdn_url = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    yield state
    state.release.set()
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path, monkeypatch):
    """Keep huggingface_hub away from the user's cache and login."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


def fetch(hub: FakeHub, names, root: Path, lines: list[str] | None = None, md5s=None):
    log = lines.append if lines is not None else (lambda line: None)
    return download_checkpoints(names, root, md5s=hub.md5s() if md5s is None else md5s, endpoint=hub.url, log=log)


def test_downloads_release_layout_then_second_run_does_nothing(hub, tmp_path):
    hub.add("CV8x8x8-720p")
    hub.add("DV4x8x8-360p")
    root = tmp_path / "checkpoints"
    report = fetch(hub, ["CV8x8x8_720p", "Cosmos-Tokenize1-DV4x8x8-360p"], root)
    assert [(r.name, r.status) for r in report.results] == [("CV8x8x8-720p", "done"), ("DV4x8x8-360p", "done")]
    assert report.exit_code == 0
    for repo, files in hub.repos.items():
        folder = root / repo.split("/")[1]
        wanted = {f for f in files if not f.startswith((".", "extra"))}
        assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == wanted
        assert all((folder / f).read_bytes() == files[f] for f in wanted)
    assert "mean_std.pt" in report.results[0].downloaded and "mean_std.pt" not in report.results[1].downloaded

    served = len(hub.requests)
    lines: list[str] = []
    again = fetch(hub, ["CV8x8x8-720p", "DV4x8x8-360p"], root, lines)
    assert [r.status for r in again.results] == ["skipped", "skipped"]
    assert len(hub.requests) == served, "a complete model must be skipped without asking the Hub"
    assert "already complete (7 files, 4 MD5-verified)" in lines[0]
    assert again.summary() == "nothing to do: all 2 models are already complete"


def test_corrupted_local_file_is_removed_and_fetched_again(hub, tmp_path):
    repo = hub.add("CV4x8x8-360p")
    root = tmp_path / "checkpoints"
    fetch(hub, ["CV4x8x8-360p"], root)
    target = root / "Cosmos-Tokenize1-CV4x8x8-360p" / "decoder.jit"
    target.write_bytes(b"x" * target.stat().st_size)
    lines: list[str] = []
    report = fetch(hub, ["CV4x8x8-360p"], root, lines)
    assert report.results[0].status == "done" and report.results[0].downloaded == ["decoder.jit"]
    assert target.read_bytes() == hub.repos[repo]["decoder.jit"]
    assert any("decoder.jit: MD5 mismatch" in line for line in lines)
    assert len(hub.gets(repo, "decoder.jit")) == 2 and len(hub.gets(repo, "encoder.jit")) == 1


@pytest.mark.parametrize("bad_serves", [1, 2])
def test_bad_download_is_retried_once_then_fails(hub, tmp_path, bad_serves):
    repo = hub.add("DV8x16x16-720p")
    hub.add("CV4x8x8-360p")
    hub.corrupt[(repo, "encoder.jit")] = bad_serves
    lines: list[str] = []
    report = fetch(hub, ["DV8x16x16-720p", "CV4x8x8-360p"], tmp_path, lines)
    encoder = tmp_path / "Cosmos-Tokenize1-DV8x16x16-720p" / "encoder.jit"
    assert sum("encoder.jit: MD5 mismatch" in line and "downloading it again" in line for line in lines) == 1
    assert len(hub.gets(repo, "encoder.jit")) == 2
    assert report.results[1].status == "done", "one model's failure must not stop the others"
    if bad_serves == 1:
        assert report.results[0].status == "done" and encoder.read_bytes() == hub.repos[repo]["encoder.jit"]
    else:
        assert report.results[0].status == "failed" and report.exit_code == 1
        assert "again after a fresh download" in report.results[0].detail
        assert not encoder.exists() and not (encoder.parent / MANIFEST).exists()


def test_transfer_cut_midway_resumes_with_range(hub, tmp_path):
    data = os.urandom(200_000)
    repo = hub.add("DV4x8x8-360p", {"config.json": b"{}", "model.pt": data})
    hub.cut_once.add((repo, "model.pt"))
    lines: list[str] = []
    report = fetch(hub, ["DV4x8x8-360p"], tmp_path, lines, md5s={})
    assert report.results[0].status == "done"
    assert (tmp_path / "Cosmos-Tokenize1-DV4x8x8-360p" / "model.pt").read_bytes() == data
    first, resumed = hub.gets(repo, "model.pt")
    assert first[2] is None and resumed[2] == f"bytes={len(data) // 2}-"
    assert any(f"model.pt: transfer interrupted at byte {len(data) // 2}" in line for line in lines)


def test_redirect_to_cdn_drops_the_token_and_keeps_the_range(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    data = os.urandom(100_000)
    repo = hub.add("DV4x8x8-360p", {"config.json": b"{}", "model.pt": data})
    hub.redirect.add((repo, "model.pt"))
    hub.cut_once.add((repo, "model.pt"))
    report = fetch(hub, ["DV4x8x8-360p"], tmp_path, md5s={})
    assert report.results[0].status == "done"
    assert (tmp_path / "Cosmos-Tokenize1-DV4x8x8-360p" / "model.pt").read_bytes() == data
    at_hub, at_cdn = hub.gets(repo, "model.pt"), hub.gets(repo, "model.pt", "cdn")
    assert len(at_hub) == 4 and all(r[3] == "Bearer hf_test_token" for r in at_hub), "kept within the Hub's origin"
    assert [(r[2], r[3]) for r in at_cdn] == [(None, None), (f"bytes={len(data) // 2}-", None)]
    assert hub.gets(repo, "config.json")[0][3] == "Bearer hf_test_token"


def test_partial_file_of_another_version_is_not_continued(hub, tmp_path):
    data = os.urandom(50_000)
    repo = hub.add("DV4x8x8-360p", {"config.json": b"{}", "model.pt": data})
    staging = tmp_path / "Cosmos-Tokenize1-DV4x8x8-360p" / ".cache" / "vtok"
    staging.mkdir(parents=True)
    (staging / "model.pt.0123456789abcdef.part").write_bytes(os.urandom(20_000))
    report = fetch(hub, ["DV4x8x8-360p"], tmp_path, md5s={})
    assert report.results[0].status == "done"
    assert (staging.parent.parent / "model.pt").read_bytes() == data
    assert [r[2] for r in hub.gets(repo, "model.pt")] == [None]
    assert not list(staging.glob("*.part"))


def test_gated_with_token_gives_one_line_and_other_models_go_on(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_without_license")
    gated = hub.add("CV8x8x8-720p")
    hub.add("CV4x8x8-360p")
    hub.denied[gated] = (403, "GatedRepo", False)
    report = fetch(hub, ["CV8x8x8-720p", "CV4x8x8-360p"], tmp_path)
    failed = report.results[0]
    assert failed.status == "failed" and report.results[1].status == "done" and report.exit_code == 1
    assert "\n" not in failed.detail
    assert "HTTP 403" in failed.detail and f"accept the license at {hub.url}/{gated}" in failed.detail


def test_unreachable_hub_fails_each_model_in_one_line(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = download_checkpoints(
        ["CI8x8-360p", "DI8x8-360p"], tmp_path, endpoint=f"http://127.0.0.1:{port}", log=lambda line: None
    )
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert all(r.detail.startswith("download failed: ") and "\n" not in r.detail for r in report.results)


def test_repo_without_a_released_file_fails(hub, tmp_path):
    files = fake_files("CV8x8x8-720p")
    table = {"CV8x8x8-720p": {f: hashlib.md5(files[f]).hexdigest() for f in ("encoder.jit", "mean_std.pt")}}
    del files["mean_std.pt"]
    hub.add("CV8x8x8-720p", files)
    report = fetch(hub, ["CV8x8x8-720p"], tmp_path, md5s=table)
    assert report.results[0].status == "failed" and "has no mean_std.pt" in report.results[0].detail
    assert not hub.gets("nvidia/Cosmos-Tokenize1-CV8x8x8-720p", "encoder.jit")


def test_release_table_names_known_models():
    from vtok.networks.config import MODEL_NAMES

    assert set(RELEASE_MD5) <= set(MODEL_NAMES)
    assert all(re.fullmatch("[0-9a-f]{32}", md5) for files in RELEASE_MD5.values() for md5 in files.values())


# --- the command line, in a subprocess that finds the Hub through HF_ENDPOINT as a user's shell would ---

# Ctrl-C reaches the child as it does from a terminal, even when the suite runs as a background job (whose
# children start with SIGINT ignored, and would then ignore the test's Ctrl-C and hang on the stalled server).
CLI = (
    "import signal, sys, vtok.cli.main as m, vtok.cli.download_checkpoints as d; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "m.COMMANDS += () if d in m.COMMANDS else (d,); sys.exit(m.main(sys.argv[1:]))"
)


def cli_env(hub: FakeHub, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def run_cli(hub: FakeHub, home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, "download-checkpoints", *args],
        cwd=home,
        env=cli_env(hub, home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_downloads_then_skips(hub, tmp_path):
    for name in ("CI8x8-360p", "DI16x16-360p"):  # image models: not in NVIDIA's MD5 table
        hub.add(
            name,
            {
                f: f"{name}/{f}".encode() * 30
                for f in ("README.md", "config.json", "encoder.jit", "decoder.jit", "autoencoder.jit", "model.pt")
            },
        )
    first = run_cli(hub, tmp_path, "--tokenizer_types", "CI8x8-360p", "DI16x16_360p")
    assert first.returncode == 0, first.stderr
    assert "checkpoints: 2 done, 0 skipped (already complete), 0 failed" in first.stdout
    folder = tmp_path / "checkpoints" / "Cosmos-Tokenize1-DI16x16-360p"
    assert (folder / "model.pt").read_bytes() == hub.repos["nvidia/Cosmos-Tokenize1-DI16x16-360p"]["model.pt"]
    second = run_cli(
        hub, tmp_path, "--tokenizer_types", "CI8x8-360p", "DI16x16-360p", "--checkpoint_dir", "checkpoints"
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().endswith("nothing to do: all 2 models are already complete")


def test_cli_gated_without_token_one_line_exit_1(hub, tmp_path):
    gated = hub.add("CI16x16-360p", {"config.json": b"{}", "encoder.jit": b"e" * 100})
    hub.add("DI8x8-360p", {"config.json": b"{}", "encoder.jit": b"d" * 100})
    hub.denied[gated] = (401, None, True)
    result = run_cli(hub, tmp_path, "--tokenizer_types", "CI16x16-360p", "DI8x8-360p")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("CI16x16-360p: failed")]
    assert len(failed) == 1
    assert "no token was found" in failed[0] and f"accept the license at {hub.url}/{gated}" in failed[0]
    assert "hf auth login" in failed[0] and "HF_TOKEN" in failed[0]
    assert "checkpoints: 1 done, 0 skipped (already complete), 1 failed" in result.stdout


def test_cli_unknown_name_fails_fast(hub, tmp_path, monkeypatch, capsys):
    import vtok.cli.download_checkpoints as command
    import vtok.cli.main as cli

    if command not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (command,))
    code = cli.main(
        ["download-checkpoints", "--tokenizer_types", "CV8x8x8-720p", "CV8x8x9-720p", "--checkpoint_dir", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("vtok: error: unknown tokenizer 'CV8x8x9-720p'") and "CV8x8x8-720p" in err
    assert not hub.requests and not any(tmp_path.iterdir())


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_interrupted_run_leaves_part_that_next_run_resumes(hub, tmp_path, stop):
    data = os.urandom(3 << 20)  # spans a few of the downloader's 1 MiB reads, so whole ones reach the disk
    repo = hub.add("CI8x8-360p", {"config.json": b"{}", "encoder.jit": b"e" * 100, "model.pt": data})
    hub.stall_once[(repo, "model.pt")] = len(data) // 2
    folder = tmp_path / "checkpoints" / "Cosmos-Tokenize1-CI8x8-360p"
    final = folder / "model.pt"
    present_at_get: list[bool] = []
    hub.on_get = lambda repo_, filename: present_at_get.append(final.exists()) if filename == "model.pt" else None
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "download-checkpoints", "--tokenizer_types", "CI8x8-360p"],
        cwd=tmp_path,
        env=cli_env(hub, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hub.stalled.wait(60), "the first run never reached model.pt"
        deadline = time.monotonic() + 30
        while (
            not (
                parts := [
                    p for p in (folder / ".cache" / "vtok").glob("model.pt.*.part") if p.stat().st_size >= 1 << 20
                ]
            )
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert len(parts) == 1 and not final.exists()
        proc.send_signal(stop)
        assert proc.wait(30) != 0
    finally:
        proc.kill()
        proc.wait()
        hub.release.set()
    (part,) = parts
    have = part.stat().st_size
    assert 0 < have < len(data) and part.read_bytes() == data[:have]

    lines: list[str] = []
    md5s = {"CI8x8-360p": {"model.pt": hashlib.md5(data).hexdigest()}}
    report = fetch(hub, ["CI8x8-360p"], tmp_path / "checkpoints", lines, md5s=md5s)
    assert report.results[0].status == "done" and report.results[0].downloaded == ["model.pt"]
    assert [r[2] for r in hub.gets(repo, "model.pt")] == [None, f"bytes={have}-"]
    assert len(hub.gets(repo, "config.json")) == 1, "files finished by the first run are kept"
    assert any(f"model.pt: resuming the partial download at byte {have} of {len(data)}" in line for line in lines)
    assert hashlib.md5(final.read_bytes()).hexdigest() == md5s["CI8x8-360p"]["model.pt"]
    assert present_at_get == [False, False] and not part.exists()
