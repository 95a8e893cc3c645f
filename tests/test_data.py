"""The data directory, `proxmf-bench data`, and fetching against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import sys
import threading
from pathlib import Path

import pytest

from conftest import HSI_DATA, needs_hsi
from proxmf_bench.cli import main
from proxmf_bench.errors import DataError
from proxmf_bench.plugin import data_files as data
from proxmf_bench.plugin.specs import DataFile

PAYLOAD = b"hyperspectral bytes " * 5000
PAYLOAD_FILE = DataFile("scene/cube.bin", hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    """``serve(folder)`` -> base URL of a 127.0.0.1 HTTP server for that folder."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _folder_with(tmp_path: Path, content: bytes) -> Path:
    folder = tmp_path / "served"
    (folder / "scene").mkdir(parents=True)
    (folder / "scene" / "cube.bin").write_bytes(content)
    return folder


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(data.ENV_DATA, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    default = tmp_path / "cache" / "proxmf-bench" if sys.platform.startswith("linux") else data.default_data_dir()
    assert data.data_dir() == (default, "default per-user cache")
    monkeypatch.setenv(data.ENV_DATA, str(tmp_path / "env"))
    assert data.data_dir() == (tmp_path / "env", "$PROXMF_BENCH_DATA")
    assert data.data_dir(tmp_path / "flag") == (tmp_path / "flag", "--data-dir")
    with data.use_data_dir(tmp_path / "flag"):
        assert data.data_dir() == (tmp_path / "flag", "--data-dir")
    assert data.data_dir() == (tmp_path / "env", "$PROXMF_BENCH_DATA")


def test_fetch_from_registered_address(serve, tmp_path):
    base = serve(_folder_with(tmp_path, PAYLOAD))
    file = DataFile(PAYLOAD_FILE.path, PAYLOAD_FILE.sha256, PAYLOAD_FILE.size, url=f"{base}/scene/cube.bin")
    root = tmp_path / "data"
    path = data.fetch(file, root)
    assert path == root / "scene" / "cube.bin" and path.read_bytes() == PAYLOAD
    assert data.file_status(file, root) == "ok"


def test_corrupt_download_leaves_nothing(serve, tmp_path):
    corrupt = bytearray(PAYLOAD)
    corrupt[123] ^= 1
    base = serve(_folder_with(tmp_path, bytes(corrupt)))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="failed its checksum.*nothing was saved"):
        data.fetch(PAYLOAD_FILE, root, mirror=base)
    assert not root.exists()  # not even the folders made for the download


def test_unreachable_or_absent_address(serve, tmp_path):
    base = serve(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot download .*cube.bin"):
        data.fetch(PAYLOAD_FILE, tmp_path / "data", mirror=base)
    with pytest.raises(DataError, match="no public download address"):
        data.fetch(PAYLOAD_FILE, tmp_path / "data")


@pytest.mark.parametrize(("mirror", "message"), [
    ("ftpx://example.invalid/x", "--mirror 'ftpx://example.invalid/x' has the unsupported scheme 'ftpx'"),
    ("gopher://example.invalid", "has the unsupported scheme 'gopher'"),
    ("/some/folder", "has no scheme (use http://, https://, ftp://, file://); for a local folder use file:///"),
])
def test_a_mirror_that_cannot_be_fetched_from_leaves_nothing(mirror, message, tmp_path, capsys):
    target = tmp_path / "data"
    assert main(["data", "fetch", "samson", "--data-dir", str(target), "--mirror", mirror]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("proxmf-bench: error: --mirror ") and message in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert not target.exists()


def test_a_failed_download_removes_the_folders_it_made(tmp_path, capsys):
    target = tmp_path / "data" / "deeper"
    assert main(["data", "fetch", "samson", "--data-dir", str(target), "--mirror", "http://127.0.0.1:9"]) == 2
    assert "cannot download http://127.0.0.1:9/samson/Samson.mat" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_valid_copy_is_not_downloaded_again(tmp_path):
    root = _folder_with(tmp_path, PAYLOAD)
    assert data.fetch(PAYLOAD_FILE, root, mirror="http://127.0.0.1:9/never-contacted") == root / "scene/cube.bin"


@needs_hsi
def test_cli_fetch_then_list_real_scenes(serve, tmp_path, capsys):
    base = serve(HSI_DATA)
    target = tmp_path / "mine"
    assert main(["data", "fetch", "samson", "jasper", "--data-dir", str(target), "--mirror", base]) == 0
    out = capsys.readouterr().out
    assert "samson/Samson.mat fetched" in out and "jasper_ridge/Jasper.mat fetched" in out
    assert main(["data", "fetch", "all", "--data-dir", str(target), "--mirror", base]) == 0
    assert "already present" in capsys.readouterr().out
    assert main(["data", "--data-dir", str(target)]) == 0
    listing = capsys.readouterr().out
    assert f"data directory: {target}  [--data-dir]" in listing
    lines = {line.split()[0]: line for line in listing.splitlines()[1:] if line.strip()}
    assert " ok " in lines["samson"] and " ok " in lines["jasper"]
    assert "no files needed" in lines["synthetic"] and "no files needed" in lines["digits"]


def test_cli_list_reports_missing_and_corrupt(tmp_path, capsys):
    (tmp_path / "samson").mkdir()
    (tmp_path / "samson" / "Samson.mat").write_bytes(b"not the real file")
    assert main(["data", "list", "samson", "jasper", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrong size (17 bytes, expected 3735621)" in out and "missing" in out
    assert "fetch with: proxmf-bench data fetch jasper samson" in out


def test_cli_data_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "fetch", "samsn"]) == 2
    assert "did you mean 'samson'" in capsys.readouterr().err
    assert main(["data", "list", "--mirror", "http://127.0.0.1:9"]) == 2
    assert "--mirror only applies" in capsys.readouterr().err
    assert main(["data", "fetch", "samson", "--data-dir", __file__]) == 2
    assert "is not a directory" in capsys.readouterr().err
