"""Files the course downloads: fetched once into a cache folder, each one checked before use.

A file is written under a temporary name beside its place and renamed only when its size and
content hash are the expected ones, so a download cut short (a lost connection, a killed kernel)
is never read as a whole file: the next call finds it missing and fetches it again. The hash is
the file's git blob id (the SHA-1 of ``b"blob <size>\\0" + content``), which ``git ls-tree``
lists for every file of a repository without downloading any of them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

from . import env


class DownloadError(RuntimeError):
    """A file could not be downloaded (no internet, not found, or it arrived incomplete)."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file to download."""

    path: str
    """Where it goes, relative to the cache folder (``"edges/cat/cat1.png"``)."""
    url: str
    """Where it comes from."""
    size: int
    """Its size in bytes."""
    blob: str
    """Its git blob id, or the first hex digits of it."""


def git_blob_id(content: bytes) -> str:
    """The id git gives a file with this content: SHA-1 of ``b"blob <size>\\0" + content``, 40 hex digits."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def is_complete(path: Path, size: int) -> bool:
    """Whether ``path`` is a file of ``size`` bytes (only checked files are ever given their final name)."""
    return path.is_file() and path.stat().st_size == size


def fetch_files(files: list[RemoteFile], folder: str | os.PathLike, *, what: str, offline_hint: str,
                workers: int = 8, attempts: int = 2, timeout: float = 30.0, progress: bool = True) -> Path:
    """Make sure every file of ``files`` is in ``folder``: download the missing ones, check each.

    Files already there with the right size are kept. Each download is written to a temporary
    file, checked (size and git blob id) and then renamed into place; one that arrives short or
    different is fetched again, up to ``attempts`` times. A bar (tqdm) shows the bytes fetched.
    Raises :class:`DownloadError` naming ``what``, the folder, the URL and the reason, followed by
    ``offline_hint`` (how to do without a download), when a file cannot be had; with
    ``COURSEKIT_OFFLINE=1`` no download is tried. Returns ``folder``.
    """
    folder = Path(folder).expanduser()
    missing = [file for file in files if not is_complete(folder / file.path, file.size)]
    if not missing:
        return folder
    if os.environ.get(env.FORCE_OFFLINE_VARIABLE, "") not in ("", "0"):
        raise DownloadError(f"{len(missing)} file(s) of {what} are not in {folder}, and "
                            f"{env.FORCE_OFFLINE_VARIABLE} forbids downloading them. {offline_hint}")
    from tqdm.auto import tqdm
    stop = threading.Event()   # the first failure stops the other downloads
    with tqdm(total=sum(file.size for file in missing), unit="B", unit_scale=True, disable=not progress,
              desc=f"downloading {what}", leave=False) as bar, \
            concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(_fetch_one, file, folder, attempts, timeout, stop) for file in missing]
        for job in concurrent.futures.as_completed(jobs):
            try:
                bar.update(job.result())
            except DownloadError as error:
                stop.set()
                raise DownloadError(f"Could not download {what} into {folder}: {error}. {offline_hint}") from None
    return folder


def _fetch_one(file: RemoteFile, folder: Path, attempts: int, timeout: float, stop: threading.Event) -> int:
    """Download ``file`` into ``folder`` (temporary name, check, rename); returns its size."""
    target = folder / file.path
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    problem = ""
    for _ in range(attempts):
        if stop.is_set():
            return 0
        try:
            content = _read_url(file.url, timeout)
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{file.url} answered HTTP {error.code} ({error.reason})") from None
        except (urllib.error.URLError, OSError) as error:   # no network, refused, reset, timed out, cut short
            problem = f"{file.url} could not be read ({getattr(error, 'reason', None) or error})"
            continue
        if len(content) != file.size:
            problem = f"{file.url} arrived with {len(content):,} bytes instead of {file.size:,}"
            continue
        if not git_blob_id(content).startswith(file.blob):
            problem = f"{file.url} arrived with other content than expected (git blob id {git_blob_id(content)[:12]}...)"
            continue
        try:
            temporary.write_bytes(content)
            os.replace(temporary, target)   # atomic: the final name only ever holds a checked file
        finally:
            temporary.unlink(missing_ok=True)
        return file.size
    raise DownloadError(problem)


def _read_url(url: str, timeout: float) -> bytes:
    """The body of ``url``; ``http.client.IncompleteRead`` (an OSError's cousin) is turned into an OSError."""
    import http.client
    request = urllib.request.Request(url, headers={"User-Agent": "coursekit"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except http.client.HTTPException as error:   # IncompleteRead, RemoteDisconnected, ...
        raise OSError(f"{type(error).__name__}: the connection closed early") from None
