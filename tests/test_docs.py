"""Every command in README.md and docs/*.md runs: the docs cannot rot.

Each ```bash block is split into commands (backslash continuations joined, comment lines dropped) and each
```python block is one script. They run in order (README first, then docs/*.md by name) as subprocesses in
one workspace, with `vtok` and `python` from this venv first on PATH, so a later command sees what an
earlier one wrote (`vtok encode` then `vtok decode`). A command must exit with 0.

What the real commands need (released checkpoints, HD-VILA, VGG16/LPIPS weights, GPUs, hours) is replaced
by small stand-ins, all listed here for review:
- the `workspace` fixture: tiny checkpoints under every path the docs use (RELEASES: NVIDIA's release
  folder layout, random weights at channels=16/32; an `iter_N.pt` in the training layout), short generated
  mp4s and PNGs in the folders the docs name (VIDEOS), random VGG16 and LPIPS weights (`weights/lpips/`,
  also `$VTOK_VGG16_WEIGHTS`), an HD-VILA jsonl;
- SUBSTITUTIONS (bash) and PYTHON_SUBSTITUTIONS: regex rewrites, each with its reason (8 GPUs -> 2 CPU
  processes, 10,000 iterations -> 1, real sizes -> tiny overrides, ...);
- `vtok download-checkpoints` talks to a loopback fake Hugging Face Hub (HF_ENDPOINT) serving the tiny
  checkpoints; a `vtok` wrapper first on PATH swaps NVIDIA's MD5 table for the fake files' (nothing else);
- `vtok download-hdvila` reads a jsonl whose URLs point at a loopback server of generated mp4s;
- SKIPS: the few commands that cannot run inside a test, with the reason.

A command that runs with the same arguments as an earlier one (README's and a docs page's copy) runs once.
A new command in the docs is run like the others; if it needs an input the workspace lacks, add the input
to the workspace (not a skip). A test also fails on a stale skip or substitution, and on a code block in a
language it would not run (```sh, ```console).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, synthetic_frames

import vtok
from vtok.checkpoint.state_dict import ema_state_dict, training_state_dict
from vtok.io.video import write_video
from vtok.metrics import LPIPS

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LANGUAGES_RUN = ("bash", "python")
LANGUAGES_SHOWN = ("text", "")  # printed output, layouts, formats: never run
VENV_BIN = Path(sys.executable).parent
TIMEOUT_S = 300

# Exact commands (comments removed) that do not run here, and why.
SKIPS: dict[str, str] = {
    "make demo": "tests/test_demo.py runs `vtok demo` (`make demo` is that plus `make setup`)",
    "make test": "it is this test suite (CI runs it)",
}

# Overrides appended to every trainer command: a 16-channel network on 9x32x32 clips read in the main process,
# fp32 (this CPU emulates bf16), jits traced at the smallest valid shape. The perceptual term runs, with
# random VGG16 weights from $VTOK_VGG16_WEIGHTS (the workspace's).
TINY_TRAIN = [
    "model.config.network.channels=16",
    "trainer.validate_at_start=false",
    "trainer.logging_iter=1",
    "trainer.precision=fp32",
    "loss.perceptual.dtype=float32",
    "checkpoint.jit.input_shape=null",
    "checkpoint.jit.dtype=float32",
]
for _loader in ("dataloader_train", "dataloader_val"):
    TINY_TRAIN += [
        f"{_loader}.dataset.num_video_frames=9",
        f"{_loader}.dataset.crop_height=32",
        f"{_loader}.dataset.crop_width=32",
        f"{_loader}.num_workers=0",
    ]
TRAINER = r"(-m vtok\.train|\bvtok train)\b"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Substitution:
    pattern: str  # regex searched in the command
    replace: Callable[[re.Match], str] | str
    why: str


SUBSTITUTIONS: list[Substitution] = [
    Substitution(r"--nproc_per_node[= ]8\b", "--nproc_per_node=2", "2 CPU processes (gloo) stand in for 8 GPUs"),
    Substitution(r"--nnodes[= ]\d+", "--nnodes=1", "one machine plays every node"),
    Substitution(
        r"--rdzv_endpoint[= ]\S+",
        lambda m: f"--rdzv_endpoint=127.0.0.1:{_free_port()}",
        "the rendezvous host is this machine, on a free port",
    ),
    Substitution(
        r"\btorchrun (?!.*--rdzv_endpoint)",
        lambda m: f"torchrun --master_port={_free_port()} ",
        "a free port, so parallel test runs do not collide on 29500",
    ),
    Substitution(
        r"trainer\.max_iter=(\d+)",
        lambda m: f"trainer.max_iter={max(1, int(m[1]) // 10000)}",
        "1/10000 of the iterations (at least 1)",
    ),
    Substitution(
        TRAINER + r".*$",
        lambda m: " ".join([m[0], *TINY_TRAIN] + ([] if "max_iter=" in m[0] else ["trainer.max_iter=1"])),
        "tiny network and clips (above); one iteration unless the command sets trainer.max_iter",
    ),
    Substitution(
        r"(checkpoints/posttraining/\S*/iter_)(\d{9})",
        lambda m: f"{m[1]}{max(1, int(m[2]) // 10000):09d}",
        "the files of the shortened runs",
    ),
    Substitution(
        r"vtok inspect CKPT\b",
        "vtok inspect checkpoints/Cosmos-Tokenize1-CV8x8x8-720p/model.pt",
        "CKPT is a placeholder",
    ),
]


@dataclass(frozen=True)
class Snippet:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the command's first line
    language: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def fenced_blocks(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line of the first content line, language, lines) of every fenced code block."""
    blocks, current = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current = (number + 1, line[3:].strip(), [])
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, f"{path}: unclosed code block from line {current[0] - 1}"
    return blocks


def strip_comment(command: str) -> str:
    """The command without a trailing `# comment` (a `#` outside quotes, after a space)."""
    quote = None
    for i, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
    return command.rstrip()


def bash_commands(first_line: int, lines: list[str]) -> list[tuple[int, str]]:
    """(line, command) of a bash block: continuations joined, comments and blank lines dropped."""
    commands, pending, start = [], "", first_line
    for offset, line in enumerate(lines):
        if not pending:
            start = first_line + offset
        text = strip_comment(line) if not line.rstrip().endswith("\\") else line.rstrip()[:-1]
        pending += (" " if pending else "") + text.strip()
        if not line.rstrip().endswith("\\"):
            if pending:
                commands.append((start, pending))
            pending = ""
    return commands


def snippets() -> list[Snippet]:
    found = []
    for path in DOCS:
        doc = str(path.relative_to(REPO_ROOT))
        for first, language, lines in fenced_blocks(path):
            if language == "bash":
                found += [Snippet(doc, n, language, c) for n, c in bash_commands(first, lines)]
            elif language == "python":
                found.append(Snippet(doc, first, language, "\n".join(lines)))
    return found


def substitute(command: str) -> str:
    """The command as it runs here (SUBSTITUTIONS applied in order)."""
    for sub in SUBSTITUTIONS:
        command = re.sub(sub.pattern, sub.replace, command)
    return command


def run_key(command: str) -> str:
    """What makes two substituted commands the same run: their arguments, ports masked, repeats dropped
    (`a=1 x a=1` runs as `x a=1`), so README's and a docs page's copies of one command run once."""
    words = shlex.split(re.sub(r"(--master_port=|--rdzv_endpoint=127\.0\.0\.1:)\d+", r"\1PORT", command))
    return " ".join(w for i, w in enumerate(words) if w not in words[i + 1 :])


def substitute_python(code: str) -> str:
    """The python block as it runs here (PYTHON_SUBSTITUTIONS applied in order)."""
    for pattern, replacement, _ in PYTHON_SUBSTITUTIONS:
        code = re.sub(pattern, replacement, code)
    return code


# --- the workspace ------------------------------------------------------------------------------------------

# Release folders: {model: (channels, with the three jits)}. Tracing is slow here, so only the folder whose
# jits the docs name has them; the others hold model.pt, which every command reads as well.
RELEASES = {
    "CV8x8x8-720p": (16, True),
    "CV4x8x8-360p": (16, False),
    "DV8x16x16-720p": (16, False),
    "DV4x8x8-360p": (16, False),
    "CI8x8-360p": (32, False),
}
# Rewrites of ```python blocks (regex, replacement, reason).
PYTHON_SUBSTITUTIONS = [
    (
        r"torch\.rand\(1, 3, 17, 256, 256\)",
        "torch.rand(1, 3, 17, 64, 64)",
        "64x64 frames: the 256x256 example takes 20 s on a busy 2-core CPU",
    ),
    (
        r'"trainer\.precision=fp32"\]\)',
        '"trainer.precision=fp32", ' + ", ".join(f'"{o}"' for o in TINY_TRAIN) + "])",
        "the tiny network and clips of the trainer commands (TINY_TRAIN)",
    ),
]
VIDEOS = {  # folder: (count, frames, height, width)
    "clips": (1, 17, 48, 64),
    "my_clips": (2, 17, 48, 64),
    "val": (2, 9, 48, 64),
    "datasets/hdvila/videos": (3, 17, 48, 64),
    "my/videos": (3, 49, 48, 64),
    "hdvila_sources": (2, 30, 48, 64),
}
CLIP_NAMES = ("clip.mp4", "clip_1.mp4", "clip_2.mp4")  # inference.md reads tokens/clip.safetensors


def training_file(tok: vtok.Tokenizer, iteration: int) -> dict:
    """A checkpoint dict in NVIDIA's layout: network, EMA, AdamW and LambdaLR states, iteration."""
    state = tok.state_dict()
    params = list(tok.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.5, 0.999), weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    return {
        "model": {**training_state_dict(state), **ema_state_dict(state)},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "grad_scaler": {},
        "iteration": iteration,
    }


def release_folder(folder: Path, name: str, channels: int, jits: bool) -> dict[str, bytes]:
    """`Cosmos-Tokenize1-<name>/` as NVIDIA releases it, at a tiny width: model.pt, config.json, the jits."""
    torch.manual_seed(0)
    tok = vtok.build_tokenizer(name, channels=channels).eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(training_file(tok, iteration=0), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"model": name, "channels": channels}) + "\n")
    if jits:
        vtok.export_jit(tok, folder, dtype=torch.float32)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def write_videos(folder: Path, count: int, frames: int, height: int, width: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_video(folder / CLIP_NAMES[i], synthetic_frames(frames, height, width, seed=i), 10)


class FakeHubServer:
    """tests/test_download_checkpoints.py's loopback Hub and CDN, serving the workspace's release folders."""

    def __init__(self, releases: dict[str, dict[str, bytes]]) -> None:
        from test_download_checkpoints import FakeHub, HubHandler

        self.hub = FakeHub()
        for name, files in releases.items():
            self.hub.add(name, files)
        self.servers = []
        for role in ("hub", "cdn"):
            handler = type("Handler", (HubHandler,), {"hub": self.hub, "role": role})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        self.hub.url, self.hub.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def file_server(folder: Path) -> ThreadingHTTPServer:
    """A loopback HTTP server of the files in `folder`."""
    handler = functools.partial(QuietFiles, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


WRAPPER = """#!{python}
import json, os, sys
if sys.argv[1:2] == ["download-checkpoints"]:  # the fake Hub's files have their own MD5s
    from vtok.download import checkpoints
    checkpoints.RELEASE_MD5.clear()
    checkpoints.RELEASE_MD5.update(json.loads(os.environ["VTOK_DOCS_TEST_MD5"]))
from vtok.cli.main import main
sys.exit(main())
"""


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    ran: dict[str, tuple[str, int]]  # run_key of a command -> (first snippet id, exit code)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("docs_workspace")
    releases = {
        name: release_folder(root / "checkpoints" / f"Cosmos-Tokenize1-{name}", name, *spec)
        for name, spec in RELEASES.items()
    }
    torch.manual_seed(1)
    tok = vtok.build_tokenizer("CV8x8x8-720p", channels=16)
    torch.save(training_file(tok, iteration=10000), root / "iter_000010000.pt")
    (root / "logs/run/checkpoints").mkdir(parents=True)
    torch.save(training_file(tok, iteration=5000), root / "logs/run/checkpoints/iter_000005000.pt")
    for folder, shape in VIDEOS.items():
        write_videos(root / folder, *shape)
    (root / "images").mkdir()
    from PIL import Image

    for i in range(2):
        Image.fromarray(synthetic_frames(1, 64, 96, seed=i)[0]).save(root / "images" / f"image_{i}.png")
    (root / "docs").mkdir()
    lpips_folder = root / "weights" / "lpips"
    lpips_folder.mkdir(parents=True)
    lpips = LPIPS()
    torch.save(lpips.net.state_dict(), lpips_folder / "vgg16.pth")
    torch.save(lpips.lin_state_dict(), lpips_folder / "vgg.pth")

    hub = FakeHubServer(releases)
    sources = file_server(root / "hdvila_sources")
    base = f"http://127.0.0.1:{sources.server_address[1]}"
    records = [
        {
            "url": f"{base}/{CLIP_NAMES[i]}",
            "video_id": f"src{i}",
            "clip_id": f"src{i}_clip{j}.mp4",
            "caption": "a test clip",
            "span_start": f"00:00:0{j}.000",
            "span_end": f"00:00:0{j + 1}.500",
        }
        for i in range(2)
        for j in range(2)
    ]
    (root / "datasets/hdvila/hdvila-100M.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    bin_dir = root / ".bin"
    bin_dir.mkdir()
    (bin_dir / "vtok").write_text(WRAPPER.format(python=sys.executable))
    (bin_dir / "vtok").chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING_FACE", "VTOK_LPIPS", "VTOK_VGG16", "OUTPUT_ROOT"))
    }
    env.update(
        PATH=f"{bin_dir}:{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        HF_ENDPOINT=hub.hub.url,
        HF_HOME=str(root / ".hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        VTOK_DOCS_TEST_MD5=json.dumps(hub.hub.md5s()),
        TORCH_HOME=str(root / ".torch_home"),
        VTOK_VGG16_WEIGHTS=str(lpips_folder / "vgg16.pth"),
    )
    yield Workspace(root, env, {})
    hub.close()
    sources.shutdown()
    sources.server_close()


# --- the tests ----------------------------------------------------------------------------------------------

SNIPPETS = snippets()


def test_code_blocks_are_bash_python_or_text():
    """Commands cannot hide in a ```sh or ```console block, which this test would not run."""
    odd = [
        f"{path.relative_to(REPO_ROOT)}:{first - 1} ```{language}"
        for path in DOCS
        for first, language, _ in fenced_blocks(path)
        if language not in LANGUAGES_RUN + LANGUAGES_SHOWN
    ]
    assert not odd, f"use ```bash (run by this test), ```python (run) or ```text (shown only): {odd}"


def test_every_skip_and_substitution_is_used():
    """A skip or substitution that matches no documented command any more is stale: remove it."""
    commands = [s.text for s in SNIPPETS if s.language == "bash"]
    unused = [c for c in SKIPS if c not in commands]
    unused += [s.pattern for s in SUBSTITUTIONS if not any(re.search(s.pattern, c) for c in commands)]
    code = [s.text for s in SNIPPETS if s.language == "python"]
    unused += [p for p, _, _ in PYTHON_SUBSTITUTIONS if not any(re.search(p, c) for c in code)]
    assert not unused, f"unused in tests/test_docs.py: {unused}"


@pytest.mark.slow
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_documented_command_runs(snippet: Snippet, workspace: Workspace):
    if snippet.language == "bash" and snippet.text in SKIPS:
        pytest.skip(SKIPS[snippet.text])
    command = substitute(snippet.text) if snippet.language == "bash" else substitute_python(snippet.text)
    key = run_key(command) if snippet.language == "bash" else command
    if key in workspace.ran:
        first, code = workspace.ran[key]
        assert code == 0, f"the same command failed at {first}"
        return
    argv = (
        ["bash", "-euo", "pipefail", "-c", command] if snippet.language == "bash" else [sys.executable, "-c", command]
    )
    started = time.perf_counter()
    result = run_in_session(argv, workspace)
    workspace.ran[key] = (snippet.id, result.returncode)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, (
        f"{snippet.id} failed (exit {result.returncode}, {elapsed:.0f} s)\ncommand as run: {command}\n"
        f"--- stdout (end)\n{result.stdout[-3000:]}\n--- stderr (end)\n{result.stderr[-3000:]}"
    )


def run_in_session(argv: list[str], workspace: Workspace) -> subprocess.CompletedProcess:
    """Run a command in its own process group; after TIMEOUT_S kill the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(
        argv,
        cwd=workspace.root,
        env=workspace.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n[tests/test_docs.py: killed after {TIMEOUT_S} s]"
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def message_corpus() -> list[str]:
    """Every string literal under vtok/ (implicit concatenations joined), f-string fields and %s as '…'."""
    corpus = []
    for path in sorted((REPO_ROOT / "vtok").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                corpus.append("".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                corpus.append(re.sub(r"%[sdr]", "…", node.value))
    return corpus


def test_troubleshooting_messages_are_still_printed():
    """Each `### <quoted message>` heading of docs/troubleshooting.md matches a string in vtok's code (… = anything)."""
    headings = re.findall(r"^### `(.+)`$", (REPO_ROOT / "docs" / "troubleshooting.md").read_text(), re.M)
    corpus = message_corpus()
    assert len(headings) >= 20
    stale = [
        h
        for h in headings
        if not any(re.search(".*?".join(re.escape(part) for part in h.split("…")), text) for text in corpus)
    ]
    assert not stale, f"docs/troubleshooting.md quotes messages vtok no longer prints: {stale}"
