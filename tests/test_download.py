"""`data coco` against a local HTTP server: download, resume with Range, reject a corrupt file."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from ocdlib.__main__ import main
from ocdlib.data.coco_root import check_root, coco_layout
from ocdlib.data.download import Archive, DownloadError, download_coco

BODY_ANNS = ("person_keypoints_train2017.json", "person_keypoints_val2017.json")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # stored: the size stays large
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def coco_files(coco_sample_dir) -> dict[str, bytes]:
    """COCO's archive paths -> small archives laid out as COCO's, from the 4-image sample."""
    images = {p.name: p.read_bytes() for p in sorted(coco_sample_dir.glob("*.jpg"))}
    ann = (coco_sample_dir / "test_coco.json").read_bytes()
    return {
        "annotations/annotations_trainval2017.zip": _zip(
            {
                **{f"annotations/{name}": ann for name in BODY_ANNS},
                "annotations/instances_val2017.json": b"{}",  # not read by the presets
            }
        ),
        "zips/val2017.zip": _zip({f"val2017/{n}": b for n, b in images.items()}),
        "zips/train2017.zip": _zip({f"train2017/{n}": b for n, b in images.items()}),
    }


class Server:
    """Serves `files` by path, honours `Range: bytes=N-`, and can cut a transfer once."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut_once, self.requests = files, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.lstrip("/")
                server.requests.append((path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if path in server.cut_once:  # half the file, then hang up
                    server.cut_once.discard(path)
                    body = body[: len(body) // 2]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def archives(files: dict[str, bytes], md5: bool = True) -> tuple[Archive, ...]:
    """The archive table for the test's files; without md5, sizes come from the server."""
    return tuple(
        Archive(
            path,
            len(data) if md5 else 0,
            hashlib.md5(data).hexdigest() if md5 else "",
            layout_members_only=path.startswith("annotations/"),
        )
        for path, data in files.items()
    )


def test_download_extracts_the_layout_and_a_second_run_does_nothing(
    coco_files, coco_sample_dir, tmp_path
):
    root = tmp_path / "coco"
    with Server(coco_files) as server:
        todo = download_coco(root, server.url, archives(coco_files), progress=False)
        assert len(server.requests) == 3
        again = download_coco(root, server.url, archives(coco_files), progress=False)
        assert len(server.requests) == 3  # nothing fetched again
    layout = coco_layout()
    for split in layout.splits:
        if not split.wholebody:
            assert (root / split.ann).is_file()
            assert len(list((root / split.images).glob("*.jpg"))) == 4
    assert not (root / "annotations" / "instances_val2017.json").exists()
    assert not list((root / ".downloads").glob("*.zip"))  # archives deleted once extracted
    # what no URL gives: the detections (needed) and the whole-body files (optional)
    assert [(p, needed) for p, _, needed in todo] == [
        (layout.det_file, True),
        ("annotations/coco_wholebody_train_v1.0.json", False),
        ("annotations/coco_wholebody_val_v1.0.json", False),
    ]
    assert "deep-high-resolution-net.pytorch" in todo[0][1] and str(root) in todo[0][1]
    assert again == todo
    # once the detections are placed, the root checks
    det = root / layout.det_file
    det.parent.mkdir(parents=True)
    det.write_bytes((coco_sample_dir / "test_coco_det_AP_H_56.json").read_bytes())
    assert not check_root(root, weights=False).missing  # weights: tests/test_coco_path.py


def test_an_interrupted_transfer_resumes_with_range(coco_files, tmp_path):
    root = tmp_path / "coco"
    val = "zips/val2017.zip"
    # sizes from Content-Length (no table), so that resume does not rely on known sizes
    table = archives(coco_files, md5=False)
    with Server(coco_files) as server:
        server.cut_once.add(val)
        with pytest.raises(DownloadError, match="stopped at .* run the same command again"):
            download_coco(root, server.url, table, progress=False)
        part = root / ".downloads" / "val2017.zip.part"
        have = part.stat().st_size
        assert 0 < have < len(coco_files[val])
        assert not (root / "val2017").exists()
        download_coco(root, server.url, table, progress=False)
        assert (val, f"bytes={have}-") in server.requests
    assert sorted(p.name for p in (root / "val2017").iterdir()) == sorted(
        p.name for p in (root / "train2017").iterdir()
    )
    assert not part.exists()


def test_a_corrupt_file_is_rejected_and_not_extracted(coco_files, tmp_path):
    root = tmp_path / "coco"
    table = archives(coco_files)
    val = "zips/val2017.zip"
    data = bytearray(coco_files[val])
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    with Server({**coco_files, val: bytes(data)}) as server:
        with pytest.raises(DownloadError, match=r"corrupt \(MD5 [0-9a-f]{32}, expected") as err:
            download_coco(root, server.url, table, progress=False)
    assert "nothing was extracted" in str(err.value)
    assert not (root / "val2017").exists()
    assert not (root / ".downloads" / "val2017.zip.done").exists()
    assert not list((root / ".downloads").glob("val2017.zip*"))  # deleted: a rerun starts over


def test_the_command_line_names_an_unreachable_server(tmp_path, capsys, monkeypatch):
    with Server({}) as server:
        url = server.url
    monkeypatch.setenv("OCDLIB_COCO_URL", url)  # nothing listens there any more
    assert main(["data", "coco", "--root", str(tmp_path / "coco")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cannot connect" in err and url in err
