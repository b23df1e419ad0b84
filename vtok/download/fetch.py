"""Fetching one video file by URL: plain http(s) with resume, YouTube through yt-dlp or pytubefix.

Every downloader writes into a staging file `<target>.part`; `download` retries with exponential backoff,
checks the result is a readable video, and only then moves it to `target`. A file under its final name is
therefore always complete, and an interrupted download leaves its `.part` to be resumed by the next run.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlparse

from ..io.errors import MediaError
from ..io.video import probe_video
from ..version import __version__

YOUTUBE_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com")
YOUTUBE_INSTALL_HINT = "YouTube URLs need yt-dlp (or pytubefix): pip install yt-dlp"


class DownloadError(RuntimeError):
    """One failed attempt to fetch `url`; `retryable` says whether trying again may help, `status` is the HTTP
    status the server refused it with (None when it never answered with one)."""

    def __init__(self, url: str, reason: str, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.retryable = retryable
        self.status = status


class Downloader(Protocol):
    """Fetches a URL into a staging file in one attempt."""

    name: str

    def fetch(self, url: str, part: Path) -> None:
        """Write the video at `url` to `part`, continuing what `part` already holds where the source allows."""


class HttpDownloader:
    """Plain http(s) through urllib: resumes `part` with a Range request and checks the length it gets.

    `headers` are sent with every request (they may replace the User-Agent); redirects are followed, but an
    `Authorization` header only within its origin, as huggingface_hub does for its CDN redirects.
    """

    name = "http"

    def __init__(
        self, timeout: float = 60.0, chunk_size: int = 1 << 20, headers: Mapping[str, str] | None = None
    ) -> None:
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.headers = dict(headers or {})
        self._opener = urllib.request.build_opener(_CredentialSafeRedirect())

    def fetch(self, url: str, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"vtok/{__version__}", **self.headers}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = self._opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as err:
            err.close()
            if err.code == 416 and have and _range_total(err.headers.get("Content-Range")) == have:
                return  # the staging file already holds the whole resource
            if err.code == 416:
                part.unlink(missing_ok=True)
            raise DownloadError(url, f"HTTP {err.code} {err.reason}", status=err.code) from err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise DownloadError(url, f"connection failed ({getattr(err, 'reason', None) or err})") from err
        with response:
            resumed = have > 0 and response.status == 206
            if resumed and _range_start(response.headers) != have:
                part.unlink(missing_ok=True)
                raise DownloadError(url, f"server resumed at the wrong offset (asked for byte {have})")
            if not resumed:
                have = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            try:
                with open(part, "ab" if resumed else "wb") as out:
                    while chunk := response.read(self.chunk_size):
                        out.write(chunk)
            except (http.client.HTTPException, OSError) as err:
                raise DownloadError(url, f"connection lost ({err})") from err
        size = part.stat().st_size
        if total is not None and size < total:
            raise DownloadError(url, f"connection closed after {size} of {total} bytes")


class _CredentialSafeRedirect(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, minus the `Authorization` header on a redirect to another origin."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL, the port filled in from the scheme when absent."""
    parts = urlparse(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _range_start(headers: http.client.HTTPMessage) -> int | None:
    """The first byte a 206 response carries, from `Content-Range: bytes START-END/TOTAL`."""
    value = headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _range_total(value: str | None) -> int | None:
    """The resource size in `Content-Range: bytes */TOTAL` (a 416 answer), or None."""
    try:
        return int((value or "").rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


class YtDlpDownloader:
    """YouTube through yt-dlp: one mp4 stream with video (no merging, so no ffmpeg binary is needed)."""

    name = "yt-dlp"
    FORMAT = "bv*[ext=mp4][height<=?{h}]/b[ext=mp4][height<=?{h}]/bv*[ext=mp4]/b[ext=mp4]"

    def __init__(self, max_height: int = 720) -> None:
        self.max_height = max_height

    def fetch(self, url: str, part: Path) -> None:
        import yt_dlp

        options = {
            "format": self.FORMAT.format(h=self.max_height),
            "outtmpl": f"{part}.ytdl.%(ext)s",
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "noplaylist": True,
            "continuedl": True,
        }
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=True)
                requested = info.get("requested_downloads") or [{}]
                written = Path(requested[0].get("filepath") or ydl.prepare_filename(info))
        except yt_dlp.utils.DownloadError as err:
            cause = (getattr(err, "exc_info", None) or (None, None))[1]
            reason = str(err).removeprefix("ERROR: ").splitlines()[0]
            raise DownloadError(url, reason, retryable=not getattr(cause, "expected", False)) from err
        os.replace(written, part)


class PytubefixDownloader:
    """YouTube through pytubefix: the highest-resolution progressive mp4, as NVIDIA's script fetched it."""

    name = "pytubefix"

    def fetch(self, url: str, part: Path) -> None:
        from pytubefix import YouTube

        try:
            stream = YouTube(url).streams.get_highest_resolution()
            if stream is None:
                raise DownloadError(url, "no progressive mp4 stream", retryable=False)
            stream.download(output_path=str(part.parent), filename=part.name)
        except DownloadError:
            raise
        except Exception as err:  # pytubefix raises many unrelated types (network, parsing, availability)
            raise DownloadError(
                url, f"pytubefix: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from err


class MissingYouTubeSupport:
    """Stands in for a YouTube downloader when neither yt-dlp nor pytubefix is installed."""

    name = "none"

    def fetch(self, url: str, part: Path) -> None:
        raise DownloadError(url, YOUTUBE_INSTALL_HINT, retryable=False)


def is_youtube(url: str) -> bool:
    """Whether `url` points at YouTube (any of its hosts and subdomains)."""
    host = (urlparse(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in YOUTUBE_HOSTS)


def youtube_downloader() -> Downloader:
    """yt-dlp when installed, else pytubefix, else a stand-in that fails with the install hint."""
    if importlib.util.find_spec("yt_dlp") is not None:
        return YtDlpDownloader()
    if importlib.util.find_spec("pytubefix") is not None:
        return PytubefixDownloader()
    return MissingYouTubeSupport()


def downloader_for(url: str) -> Downloader:
    """The downloader a URL needs: YouTube or plain http(s); ValueError for any other scheme."""
    if is_youtube(url):
        return youtube_downloader()
    if urlparse(url).scheme in ("http", "https"):
        return HttpDownloader()
    raise ValueError(f"unsupported URL {url!r} (expected http(s) or YouTube)")


def download(
    url: str,
    target: Path,
    downloader: Downloader | None = None,
    retries: int = 3,
    retry_wait: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch `url` to `target` (a video), retrying with backoff `retry_wait * 2**i`; DownloadError when it
    cannot. The file appears under `target` only once complete and readable."""
    downloader = downloader or downloader_for(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.part")
    attempt = 0
    while True:
        try:
            downloader.fetch(url, part)
            try:
                probe_video(part)
            except MediaError as err:
                part.unlink(missing_ok=True)  # resuming a corrupt file cannot repair it
                raise DownloadError(url, f"not a readable video ({err.reason})") from err
            os.replace(part, target)
            return target
        except DownloadError as err:
            if not err.retryable or attempt >= retries:
                raise
            sleep(retry_wait * 2**attempt)
            attempt += 1
