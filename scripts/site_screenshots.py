"""Build the documentation site and photograph its front page and API page in headless Chromium.

Writes ``docs/ui/site_front.png`` and ``docs/ui/site_api.png``: the site as a
reader sees it, served from loopback. Needs the ``docs`` extra and Debian's
``chromium`` (``apt-get install chromium``).

    python scripts/site_screenshots.py
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"site_front.png": "", "site_api.png": "api/"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "ui")
    parser.add_argument("--size", default="1280,1600", help="window width,height")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium")
    if browser is None:
        sys.exit("site_screenshots: no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder) / "site"
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
                       cwd=ROOT, check=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
        handler = functools.partial(_QuietHandler, directory=str(site))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for name, page in PAGES.items():
                url = f"http://127.0.0.1:{server.server_port}/{page}"
                subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", "--disable-component-update",
                                "--no-first-run", "--hide-scrollbars", f"--user-data-dir={folder}/profile",
                                f"--window-size={args.size}", f"--screenshot={args.output / name}", url],
                               check=True, capture_output=True, timeout=120)
                print(f"{url} -> {args.output / name}")
        finally:
            server.shutdown()
            server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


if __name__ == "__main__":
    main()
