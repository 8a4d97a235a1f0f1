"""Open a leaderboard.html in headless Chromium: take a screenshot, and check that its sort/filter script runs.

    python scripts/screenshot_leaderboard.py results/modelnet10-cpu/leaderboard.html \
        --out docs/img/leaderboard-html.png --max-kb 300 --check

The screenshot is Chromium's ``--screenshot`` of the page as it opens (``--window-size``), made smaller with
Pillow (palette, then downscaled) until it fits ``--max-kb``. ``--check`` loads the page again with a view in its
URL (``#method=<first method>&sort=-mean``, then ``#q=<text>&percat=1``), dumps the DOM after the script ran
(``--dump-dom``) and checks it: the script finished (``data-js="ready"`` on <html>, no ``data-js-error``), exactly
the summary rows of that view are visible, the count line says so, and the means are in descending order.
Needs Debian's ``chromium`` (``apt-get install chromium``) or ``--chromium PATH``; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio"]


class SummaryRows(HTMLParser):
    """The <html> attributes and, per row of table#summary, its attributes and its cells' data-v or text."""

    def __init__(self) -> None:
        super().__init__()
        self.root: dict[str, str | None] = {}
        self.rows: list[tuple[dict[str, str | None], list[str]]] = []
        self.count = ""
        self._in, self._cell, self._count, self._td = False, None, False, False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.root = a
        elif tag == "table":
            self._in = a.get("id") == "summary"
        elif tag == "p" and a.get("id") == "summary-count":
            self._count = True
        elif self._in and tag == "tr" and "data-task" in a:
            self.rows.append((a, []))
        elif self._in and tag == "td" and self.rows:
            self._cell, self._td = a.get("data-v"), True
            self.rows[-1][1].append(self._cell or "")

    def handle_endtag(self, tag: str) -> None:
        self._in = self._in and tag != "table"
        self._count = self._count and tag != "p"
        self._td = self._td and tag != "td"

    def handle_data(self, data: str) -> None:
        if self._count:
            self.count += data
        elif self._td and self._cell is None:
            self.rows[-1][1][-1] += data


def parse(text: str) -> SummaryRows:
    parser = SummaryRows()
    parser.feed(text)
    return parser


def chromium(binary: str, *args: str) -> str:
    done = subprocess.run([binary, *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def screenshot(binary: str, url: str, out: Path, size: str, max_kb: int) -> None:
    """Chromium's screenshot of ``url``, as a palette PNG downscaled until it is under ``max_kb``."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "shot.png"
        chromium(binary, f"--screenshot={raw}", f"--window-size={size}", url)
        image = Image.open(raw).convert("RGB")
    scale = 1.0
    while True:
        shown = image if scale == 1.0 else image.resize((round(image.width * scale), round(image.height * scale)),
                                                        Image.LANCZOS)
        buffer = io.BytesIO()
        shown.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= max_kb * 1024 or scale < 0.3:
            break
        scale *= 0.9
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    print(f"{out}: {shown.width}x{shown.height}, {buffer.tell() / 1024:.0f} KB (scale {scale:.2f})")


def check_view(binary: str, url: str, view: str, expected: list[tuple[dict, list[str]]], by_mean: bool) -> list[str]:
    """What is wrong with the page at ``url#view`` after its script ran (an empty list: nothing)."""
    dom = parse(chromium(binary, "--virtual-time-budget=5000", "--dump-dom", f"{url}#{view}"))
    problems = []
    if dom.root.get("data-js") != "ready" or "data-js-error" in dom.root:
        problems.append(f"script did not finish: {dom.root}")
    visible = [row for row in dom.rows if "hidden" not in row[0]]
    if sorted(r[0]["data-task"] + r[0]["data-metric"] + "".join(r[1]) for r in visible) != sorted(
            r[0]["data-task"] + r[0]["data-metric"] + "".join(r[1]) for r in expected):
        problems.append(f"{len(visible)} rows visible, expected {len(expected)}")
    if not dom.count.startswith(f"{len(expected)} of {len(dom.rows)} rows shown"):
        problems.append(f"count line {dom.count!r}")
    means = [float(r[1][7]) for r in visible]
    if by_mean and means != sorted(means, reverse=True):
        problems.append("the means are not in descending order")
    print(f"#{view}: {len(visible)} of {len(dom.rows)} summary rows visible, count line {dom.count!r}, "
          f"html data-js={dom.root.get('data-js')!r}: {'ok' if not problems else '; '.join(problems)}")
    return problems


def check(binary: str, page: Path, url: str) -> int:
    static = parse(page.read_text(encoding="utf-8")).rows
    if not static:
        raise SystemExit(f"{page}: no summary rows to check")
    method = sorted({r[0]["data-method"] for r in static})[0]
    text = static[0][1][0]  # the first row's task name, as free text
    views = [(f"method={quote(method)}&sort=-mean", [r for r in static if r[0]["data-method"] == method
                                                     and "data-percat" not in r[0]], True),
             (f"q={quote(text)}&percat=1", [r for r in static if text.lower() in "".join(r[1]).lower()], False)]
    problems = [p for view, rows, by_mean in views for p in check_view(binary, url, view, rows, by_mean)]
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path, help="a leaderboard.html")
    ap.add_argument("--out", type=Path, default=None, help="screenshot PNG (default: none)")
    ap.add_argument("--window-size", default="1400,1800", help="browser window WIDTH,HEIGHT (default 1400,1800)")
    ap.add_argument("--max-kb", type=int, default=300, help="largest screenshot file, KB (default 300)")
    ap.add_argument("--check", action="store_true", help="check the sort/filter script in the browser")
    ap.add_argument("--chromium", default=None, help="the browser binary (default: chromium on PATH)")
    args = ap.parse_args(argv)
    binary = args.chromium or next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    if binary is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium, or give --chromium PATH")
    url = args.page.resolve().as_uri()
    if args.out:
        screenshot(binary, url, args.out, args.window_size, args.max_kb)
    return check(binary, args.page, url) if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
