"""Downloads from servers that drop the connection mid-file, answer 404/500, or serve a corrupt file: transient
failures are retried and a cut transfer resumed with a Range request; what still fails is never recorded as done,
and the next run fetches it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from loopback_http import file_server

from vtok.cli.main import main
from vtok.io import write_video

huggingface_hub = pytest.importorskip("huggingface_hub")

import test_download_checkpoints as loopback_hub  # noqa: E402

from vtok.download.checkpoints import MANIFEST  # noqa: E402

FakeHub, fetch = loopback_hub.FakeHub, loopback_hub.fetch
hub = loopback_hub.hub  # the loopback Hub fixture, and its isolation of the Hugging Face cache and token
_isolated_hf_home = loopback_hub._isolated_hf_home


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("sources")
    frames = np.full((20, 32, 32, 3), 90, np.uint8)
    return {
        name: write_video(folder / f"{name}.mp4", frames + k, fps=10).read_bytes()
        for k, name in enumerate(("cut", "flaky", "gone", "corrupt"))
    }


def hdvila(tmp_path, retries: int = 2) -> int:
    """`vtok download-hdvila --do_download` on tmp_path; its exit code."""
    return main(
        [
            "download-hdvila",
            "--dataset_path",
            str(tmp_path),
            "--retries",
            str(retries),
            "--retry_wait",
            "0",
            "--do_download",
        ]
    )


def test_hdvila_videos_are_retried_resumed_and_only_complete_ones_recorded(tmp_path, sources, capsys):
    with file_server() as server:
        server.routes.update(
            {
                "/cut.mp4": ("drop_once", sources["cut"]),
                "/flaky.mp4": ("status_once", (500, sources["flaky"])),
                "/gone.mp4": ("status", 404),
                "/corrupt.mp4": ("file", sources["corrupt"][: len(sources["corrupt"]) // 3]),
            }
        )
        lines = [
            {
                "url": f"{server.base}/{name}.mp4",
                "video_id": name,
                "clip_id": f"{name}_0.mp4",
                "caption": name,
                "span_start": "0",
                "span_end": "1",
            }
            for name in sources
        ]
        (tmp_path / "hdvila-100M.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        code = hdvila(tmp_path)
        out = capsys.readouterr().out
        assert code == 1 and "download: 2 done, 0 skipped, 2 failed" in out, out
        assert "gone.mp4: HTTP 404" in out and "corrupt.mp4: not a readable video" in out
        assert ("/cut.mp4", f"bytes={len(sources['cut']) // 2}-") in server.requests  # resumed, not restarted
        assert [p for p, _ in server.requests].count("/flaky.mp4") == 2  # the 500, then the file
        originals = tmp_path / "videos_orig"
        assert sorted(p.name for p in originals.iterdir()) == ["cut.mp4", "flaky.mp4"]  # no .part, nothing failed
        assert all((originals / f"{n}.mp4").read_bytes() == sources[n] for n in ("cut", "flaky"))

        server.routes.update({"/gone.mp4": ("file", sources["gone"]), "/corrupt.mp4": ("file", sources["corrupt"])})
        code = hdvila(tmp_path)
        assert code == 0 and "download: 2 done, 2 skipped, 0 failed" in capsys.readouterr().out
        assert all((originals / f"{n}.mp4").read_bytes() == data for n, data in sources.items())


def test_checkpoint_files_cut_or_corrupt_are_refetched_and_never_marked_complete(hub: FakeHub, tmp_path):
    repo = hub.add("CV4x8x8-360p")
    hub.cut_once.add((repo, "autoencoder.jit"))
    hub.corrupt[(repo, "decoder.jit")] = 2  # bad on the download and on its retry
    lines: list[str] = []
    folder = tmp_path / "Cosmos-Tokenize1-CV4x8x8-360p"
    report = fetch(hub, ["CV4x8x8-360p"], tmp_path, lines)
    assert report.results[0].status == "failed" and report.exit_code == 1
    assert (
        report.results[0].detail.startswith("decoder.jit: MD5 mismatch")
        and "again after a fresh" in report.results[0].detail
    )
    assert not (folder / MANIFEST).exists() and not (folder / "decoder.jit").exists()
    assert any("autoencoder.jit: transfer interrupted" in line for line in lines)
    assert (folder / "autoencoder.jit").read_bytes() == hub.repos[repo]["autoencoder.jit"]

    hub.cut_once.add((repo, "model.pt"))  # the Hub serves good bytes again, and cuts model.pt once
    report = fetch(hub, ["CV4x8x8-360p"], tmp_path)
    assert report.results[0].status == "done"
    assert report.results[0].downloaded == ["decoder.jit", "encoder.jit", "model.pt"]
    assert len(hub.gets(repo, "autoencoder.jit")) == 2 and len(hub.gets(repo, "model.pt")) == 2
    assert (folder / MANIFEST).exists()
    assert all(
        (folder / f).read_bytes() == data for f, data in hub.repos[repo].items() if not f.startswith((".", "extra"))
    )
