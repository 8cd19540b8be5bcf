"""Screenshot the HTML report in headless Chromium, for the README.

Runs the offline demo into a temporary folder (or uses an existing dataset ROOT), opens its
``report.html`` in headless Chromium and saves a PNG (default ``docs/report-screenshot.png``).

    python scripts/screenshot_report.py                 # demo -> docs/report-screenshot.png
    python scripts/screenshot_report.py --root data     # the report of an existing dataset
    python scripts/screenshot_report.py --out shot.png --width 1280 --height 2000

Needs Chromium: on Debian/Ubuntu ``sudo apt-get install -y chromium``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The first Chromium-family browser on PATH."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, out: Path, *, width: int, height: int, browser: str) -> None:
    """Render ``page`` (a local HTML file) in headless Chromium and save a PNG to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gbif-dl-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not out.is_file():
        raise SystemExit(
            f"chromium failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, make (or find) the report, screenshot it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="an existing dataset (default: run the demo)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report-screenshot.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--size", type=int, default=3000, help="demo: simulated occurrences")
    args = parser.parse_args(argv)

    browser = find_browser()
    if browser is None:
        print(
            "error: Chromium is not installed; install it with "
            "`sudo apt-get update && sudo apt-get install -y chromium` (Debian/Ubuntu) "
            "and run this script again",
            file=sys.stderr,
        )
        return 2

    with tempfile.TemporaryDirectory(prefix="gbif-dl-demo-") as tmp:
        root = args.root
        if root is None:
            from gbif_dl.demo import run_demo

            result = run_demo(Path(tmp) / "demo", size=args.size, progress=False)
            page = result.report_path
        else:
            from gbif_dl import report

            page = report.write_html(report.summarize(root))
        screenshot(page, args.out, width=args.width, height=args.height, browser=browser)
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
