"""Publish the asv site so that it works offline: ``asv publish``, then local copies of the
scripts and styles that asv's pages load from CDNs.

Run ``python -m benchmarks.publish_site`` (arguments after it go to ``asv publish``), then open
the site with ``asv preview`` or any static file server over ``.asv/html``. asv 0.6's pages load
jQuery, flot, bootstrap, stupidtable and blueimp-md5 from code.jquery.com, cdnjs and jsDelivr;
without network every page stays blank behind "Failed to load JavaScript". The same versions
are vendored in ``benchmarks/site/vendor/`` (MIT licensed, each with its licence; taken from
the npm registry; stupidtable is 1.1.3, the only version there, for asv's 1.0.1), copied into
the site as ``vendor/``, and the pages' ``<script>`` and ``<link>`` tags are rewritten to point
at them (without the CDN's integrity hashes, which do not match a local copy). A page that
still refers to an address this script does not know (a newer asv) is an error, so the site is
never published half offline.

``--check`` then opens the published index in headless Chromium with every host but the local
one unresolvable, and fails unless the benchmark list was rendered by the scripts.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR = Path(__file__).resolve().parent / "site" / "vendor"

# CDN address (as in asv's pages) -> the local copy under vendor/
LOCAL = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "flot/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": "flot/jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": "flot/jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        "flot-orderbars/jquery.flot.orderBars.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": "stupidtable/stupidtable.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": "blueimp-md5/md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": "bootstrap/js/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": "bootstrap/css/bootstrap.min.css",
}
# a <script src=...> or <link href=...> tag that loads from another host
REMOTE_TAG = re.compile(r"""<(script|link)\b[^>]*?\b(?:src|href)=["'](https?://[^"']+)["'][^>]*>""")
DROP_ATTRIBUTES = re.compile(r"""\s+(?:integrity|crossorigin|referrerpolicy)=["'][^"']*["']""")


def localize(html_dir: Path) -> list[str]:
    """Copy the vendored files into ``html_dir/vendor`` and point every page at them.

    Returns the pages rewritten. Raises ``SystemExit`` naming any script or style address
    that has no local copy. Links (``<a href>``) to other sites are left alone: they are
    navigation, not something the page needs to work.
    """
    pages = sorted(html_dir.glob("*.html"))
    unknown = sorted({url for page in pages for _, url in REMOTE_TAG.findall(page.read_text()) if url not in LOCAL})
    if unknown:
        raise SystemExit(f"no local copy of {', '.join(unknown)}: add it to benchmarks/site/vendor and LOCAL")
    shutil.copytree(VENDOR, html_dir / "vendor", dirs_exist_ok=True)
    rewritten = []
    for page in pages:
        text = page.read_text()

        def local(match: re.Match) -> str:
            tag = DROP_ATTRIBUTES.sub("", match.group(0))
            return tag.replace(match.group(2), "vendor/" + LOCAL[match.group(2)])

        new = REMOTE_TAG.sub(local, text)
        if new != text:
            page.write_text(new)
            rewritten.append(page.name)
    return rewritten


def html_dir_of(config: Path) -> Path:
    """The ``html_dir`` of an asv configuration (JSON with ``//`` comments)."""
    text = "\n".join(line for line in config.read_text().splitlines() if not line.lstrip().startswith("//"))
    return (config.parent / json.loads(text).get("html_dir", "html")).resolve()


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def rendered_dom(html_dir: Path, chromium: str, timeout: float = 60.0) -> str:
    """The DOM of ``index.html`` after its scripts ran, in headless Chromium, served from
    127.0.0.1 with every other host unresolvable (offline)."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-extensions", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000", "--dump-dom", url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        server.shutdown()
        server.server_close()
    if out.returncode != 0:
        raise RuntimeError(f"chromium exited with {out.returncode}: {out.stderr.strip()[-500:]}")
    return out.stdout


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a browser closing early: not an error here
        pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def check_offline(html_dir: Path, chromium: str) -> str:
    """Raise ``RuntimeError`` unless the published index renders offline; returns the DOM."""
    dom = rendered_dom(html_dir, chromium)
    index = json.loads((html_dir / "index.json").read_text())
    names = [name for name in index.get("benchmarks", {})]
    if not names:
        raise RuntimeError("the published index lists no benchmarks")
    shown = [name for name in names if name in dom]
    if not shown:
        raise RuntimeError("the page did not render the benchmark list: its scripts did not run offline")
    return dom


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="then open the site offline in headless Chromium")
    parser.add_argument("--no-publish", action="store_true", help="only localize (and check) the existing site")
    parser.add_argument("--config", type=Path, default=REPO / "asv.conf.json")
    args, asv_args = parser.parse_known_args(argv)
    if not args.no_publish:
        subprocess.run(["asv", "publish", "--config", str(args.config), *asv_args], check=True)
    html_dir = html_dir_of(args.config)
    pages = localize(html_dir)
    print(f"{html_dir}: {len(pages)} pages now load their scripts from vendor/")
    if args.check:
        chromium = find_chromium()
        if chromium is None:
            raise SystemExit("no chromium found (Debian: apt-get install chromium)")
        check_offline(html_dir, chromium)
        print("the site renders offline in headless Chromium")


if __name__ == "__main__":
    main(sys.argv[1:])
