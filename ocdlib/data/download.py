"""Download COCO 2017 into the layout the coco_* presets read (`python -m ocdlib data coco`).

Each archive is fetched with the standard library into `<root>/.downloads/`,
through a `.part` file that a later run resumes with an HTTP Range request,
checked against its size and MD5 (the sizes cocodataset.org serves, the MD5s
that public dataset tools list for them, e.g. PaddleDetection's download table;
for a file without them, the size from Content-Length), then extracted and
deleted. A marker per archive makes a second run
skip what is done. Only the files the presets read are extracted (of the
annotation archive: the person keypoint files); the layout comes from
`ocdlib.data.coco_root`. The person detections and COCO-WholeBody annotations
have no stable direct URL: the command prints where to get them, and `data
check` verifies them once placed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..errors import KitError
from .coco_root import MANUAL_STEPS, CocoLayout, coco_layout

COCO_URL = "http://images.cocodataset.org"
# Another server or mirror holding the same paths (zips/..., annotations/...); read at run
# time, never part of a config.
URL_ENV = "OCDLIB_COCO_URL"
DOWNLOADS = ".downloads"  # under the root: archives in transit and the done markers
CHUNK = 1 << 20


class DownloadError(KitError):
    """A transfer that stopped, or a file that is not what was asked for."""


@dataclass(frozen=True)
class Archive:
    """One file under the base URL; `size` and `md5` as published (0 / "": unknown)."""

    path: str  # under the base URL, e.g. "zips/val2017.zip"
    size: int = 0
    md5: str = ""
    # Extract only members the layout names (annotation files); False: every member.
    layout_members_only: bool = False

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


# COCO 2017 as cocodataset.org serves it.
COCO_ARCHIVES = (
    Archive("annotations/annotations_trainval2017.zip", 252_907_541,
            "f4bbac642086de4f52a3fdda2de5fa2c", layout_members_only=True),
    Archive("zips/val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80"),
    Archive("zips/train2017.zip", 19_336_861_798, "cced6f7f71b7629ddf16f17bbcfab6b2"),
)  # fmt: skip


def base_url(url: str | None = None) -> str:
    return (url or os.environ.get(URL_ENV) or COCO_URL).rstrip("/")


def fetch(url: str, dest: Path, size: int = 0, md5: str = "", progress: bool = True) -> Path:
    """Download `url` to `dest` through `dest.part`, resuming a partial `.part` with Range.

    The result must have `size` bytes (else Content-Length's) and the MD5 `md5` where
    given; a file that does not is deleted and DownloadError says so. A transfer that
    stops keeps the `.part` and raises DownloadError: run again to resume.
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if size and have > size:  # not a prefix of this file
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing after the .part's end: it is whole (checked next)
            return _finish(part, dest, url, size, md5, progress)
        raise DownloadError(f"{url}: the server answered HTTP {e.code} ({e.reason})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"{url}: cannot connect ({reason}); check the network, or point ${URL_ENV} "
            "(or --url) at a mirror with the same paths"
        ) from None
    with response:
        if response.status == 206:
            total = _range_total(response.headers.get("Content-Range", "")) or size
        else:  # 200: the server sends the whole file (no resume)
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else size
        if size and total and total != size:
            raise DownloadError(
                f"{url}: the server offers {total} bytes, COCO's file has {size}; is the "
                f"URL (${URL_ENV}) right?"
            )
        total = size or total
        bar = tqdm(
            total=total or None,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
            file=sys.stderr,
        )
        received = have
        with open(part, "ab" if have else "wb") as f, bar:
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, OSError) as e:
                if isinstance(e, http.client.IncompleteRead):
                    f.write(e.partial)
                    received += len(e.partial)
    if total and received < total:
        raise DownloadError(
            f"{url}: the transfer stopped at {received} of {total} bytes; run the same "
            f"command again to resume it ({part} is kept)"
        )
    return _finish(part, dest, url, total, md5, progress)


def _range_total(content_range: str) -> int:
    """The full size from 'bytes a-b/total' (0 when absent or '*')."""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else 0


def _finish(part: Path, dest: Path, url: str, size: int, md5: str, progress: bool) -> Path:
    got = part.stat().st_size
    if size and got != size:
        part.unlink()
        raise DownloadError(
            f"{url}: received {got} bytes, expected {size}; the partial file was deleted, run "
            "the same command again"
        )
    if md5:
        if progress:
            print(f"checking the MD5 of {dest.name} ({got / 1e9:.1f} GB)", file=sys.stderr)
        digest = file_md5(part)
        if digest != md5:
            part.unlink()
            raise DownloadError(
                f"{url}: the downloaded file is corrupt (MD5 {digest}, expected {md5}); it was "
                "deleted and nothing was extracted. Run the same command again; if it fails "
                f"again, the server or a proxy alters the file: try a mirror (${URL_ENV})"
            )
    os.replace(part, dest)
    return dest


def file_md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 (a checksum, not security)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def extract(
    zip_path: Path, root: Path, members: set[str] | None = None, progress: bool = False
) -> list[str]:
    """Extract `zip_path` into `root` (only `members` where given); return what was extracted."""
    root = root.resolve()
    done = []
    try:
        with zipfile.ZipFile(zip_path) as z:
            infos = z.infolist()
            bar = tqdm(infos, desc=f"extract {zip_path.name}", unit="file", disable=not progress)
            for info in bar:
                name = info.filename
                target = (root / name).resolve()
                if not target.is_relative_to(root):
                    raise DownloadError(f"{zip_path}: member {name!r} points outside {root}")
                if members is not None and name not in members:
                    continue
                z.extract(info, root)
                done.append(name)
    except zipfile.BadZipFile as e:
        raise DownloadError(
            f"{zip_path}: not a readable zip archive ({e}); delete it and run again"
        ) from None
    return done


def download_coco(
    root,
    url: str | None = None,
    archives: Sequence[Archive] = COCO_ARCHIVES,
    keep_archives: bool = False,
    progress: bool = True,
    layout: CocoLayout | None = None,
    log=print,
) -> list[tuple[str, str, bool]]:
    """Fetch and extract every archive into `root`.

    Returns the files still to place by hand as (path, how, needed by the body presets).

    Idempotent: an archive extracted before (its marker in `<root>/.downloads`) is
    skipped, a complete download is not fetched again, a partial one is resumed.
    """
    root = Path(root)
    layout = layout or coco_layout()
    base = base_url(url)
    wanted = {s.ann for s in layout.splits if Path(s.ann).name not in MANUAL_STEPS}
    for archive in archives:
        marker = root / DOWNLOADS / f"{archive.name}.done"
        if marker.is_file():
            log(f"done  {archive.name} (extracted before; delete {marker} to redo)")
            continue
        dest = root / DOWNLOADS / archive.name
        if not dest.is_file():
            fetch(f"{base}/{archive.path}", dest, archive.size, archive.md5, progress)
        log(f"got   {archive.name}; extracting into {root}")
        members = extract(dest, root, wanted if archive.layout_members_only else None, progress)
        if archive.layout_members_only and not members:
            raise DownloadError(
                f"{dest}: holds none of {sorted(wanted)}; is it COCO's annotation archive?"
            )
        marker.write_text(f"{archive.size or dest.stat().st_size} {archive.md5}\n")
        if not keep_archives:
            dest.unlink()
    todo = {layout.det_file: True}
    todo.update({s.ann: not s.wholebody for s in layout.splits})
    return [
        (rel, MANUAL_STEPS[Path(rel).name].format(path=root / rel), needed)
        for rel, needed in todo.items()
        if Path(rel).name in MANUAL_STEPS and not (root / rel).is_file()
    ]
