"""The HTML leaderboard (bench/report/html.py), read back with the stdlib parser and checked against its folder.

Each committed reference folder's page is built once (a second or two each): its tables carry every summary row
with the leaderboard's own formatting, its filters list exactly the values present, its images are the folder's
PNGs linked by their paths, nothing points outside the folder, and the committed ``leaderboard.html`` is what the builder
makes now (regenerate it with ``bench leaderboard --results-dir results/NAME --html``).
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl3d.bench.report.controls import gains_over_controls, method_label, upper_bound
from ssl3d.bench.report.html import FILTERS, IMAGE_FOLDERS, PAGE_NAME, build_page
from ssl3d.bench.report.leaderboard import claims_table, summarize
from ssl3d.bench.report.untrained import pretraining_gains
from ssl3d.bench.run.results import LEADERBOARD_COLUMNS, ResultStore

RESULTS = Path(__file__).resolve().parents[1] / "results"
REFERENCES = ["synth-quick", "modelnet10-cpu", "synth-scenes-quick"]
PNG = b"\x89PNG\r\n\x1a\n"
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data", "background"}


class Page(HTMLParser):
    """Tables (header labels, rows as (attributes, cell texts)), select options, images, URLs and tag counts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict[str, list]] = {}
        self.selects: dict[str, list[str]] = {}
        self.images: list[dict[str, str]] = []
        self.urls: list[tuple[str, str, str]] = []
        self.tags: Counter[str] = Counter()
        self.text: list[str] = []
        self._table = self._select = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        self.urls += [(tag, k, v) for k, v in a.items() if k in URL_ATTRIBUTES]
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", ""), {"head": [], "rows": []})
        elif tag == "tr" and self._table is not None and a:
            self._table["rows"].append((a, []))
        elif tag in ("th", "td") and self._table is not None:
            self._cell = self._table["head"] if tag == "th" else self._table["rows"][-1][1]
            self._cell.append("")
        elif tag == "select":
            self._select = self.selects.setdefault(a["data-filter"], [])
        elif tag == "option" and self._select is not None:
            self._select.append(a["value"])
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("th", "td"):
            self._cell = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[-1] += data
        self.text.append(data)


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    return {name: build_page(RESULTS / name) for name in REFERENCES}


@pytest.fixture(scope="module")
def pages(built) -> dict[str, Page]:
    return {name: Page(text) for name, text in built.items()}


@pytest.fixture(scope="module")
def runs() -> dict[str, pd.DataFrame]:
    return {name: ResultStore(RESULTS / name).read_leaderboard_checked()[0] for name in REFERENCES}


@pytest.fixture(scope="module")
def summaries(runs) -> dict[str, pd.DataFrame]:
    return {name: summarize(frame) for name, frame in runs.items()}


def _fmt(value: float, spec: str = ".2f") -> str:
    return "" if np.isnan(value) else format(value, spec)


@pytest.mark.parametrize("name", REFERENCES)
def test_every_summary_row_is_shown_as_the_leaderboard_formats_it(name, pages, summaries):
    summary = summaries[name]
    table = pages[name].tables["summary"]
    assert table["head"][:10] == ["task", "modality", "preset", "method", "settings", "data", "metric", "mean",
                                  "± CI", "n"]
    expected = Counter((r.task, r.modality, r.preset, method_label(r.method), r.settings, r.data_key, r.metric,
                        f"{r.mean:.2f}", _fmt(r.ci95), str(r.n)) for r in summary.itertuples())
    assert Counter(tuple(cells[:10]) for _, cells in table["rows"]) == expected
    assert len(table["rows"]) == len(summary) > 0
    overall = {(r.task, r.metric) for r in summary.itertuples() if ":" not in r.metric}
    for attrs, cells in table["rows"]:  # the filters read the same values as the cells show
        assert [attrs[f"data-{f}"] for f in FILTERS] == [cells[0], cells[1], cells[2], cells[3].split(" ")[0]]
        # a per-category row starts hidden only where its task shows the metric overall too
        assert ("data-percat" in attrs) == (":" in cells[6] and (cells[0], cells[6].split(":")[0]) in overall)


@pytest.mark.parametrize("name", REFERENCES)
def test_filters_list_exactly_the_values_present(name, pages, summaries):
    summary = summaries[name]
    selects = pages[name].selects
    for column in FILTERS:
        assert selects[column][0] == ""  # "all"
        assert selects[column][1:] == sorted(set(summary[column].astype(str))), column
    assert selects["metric"][1:] == sorted({m.split(":")[0] for m in summary["metric"]})


@pytest.mark.parametrize("name", REFERENCES)
def test_gains_and_claims_tables_match_the_leaderboard(name, pages, runs):
    tables = pages[name].tables
    gains, claims = pretraining_gains(runs[name]), claims_table(runs[name])
    assert ("gains" in tables) == (not gains.empty) and ("claims" in tables) == (not claims.empty)
    if not gains.empty:
        shown = Counter((c[0], c[3], c[4], c[10], c[11], c[13]) for _, c in tables["gains"]["rows"])
        assert shown == Counter((r.task, method_label(r.method), r.metric, f"{r.difference:+.2f}", _fmt(r.ci95),
                                 _fmt(r.q_value, ".3f")) for r in gains.itertuples())
    if not claims.empty:
        shown = Counter((c[2], c[3], c[7], c[13], c[16]) for _, c in tables["claims"]["rows"])
        assert shown == Counter((r.claim, r.task, method_label(r.better), _fmt(r.q_value, ".3f"), r.verdict)
                                for r in claims.itertuples())


@pytest.mark.parametrize("name", REFERENCES)
def test_control_and_upper_bound_tables_match_the_leaderboard(name, pages, runs):
    tables = pages[name].tables
    controls, upper = gains_over_controls(runs[name]), upper_bound(runs[name])
    assert ("controls" in tables) == (not controls.empty) and ("upper" in tables) == (not upper.empty)
    if not controls.empty:
        shown = Counter((c[0], c[3], c[5], c[8], c[12], c[13], c[15]) for _, c in tables["controls"]["rows"])
        assert shown == Counter((r.task, method_label(r.method), r.metric, r.control, f"{r.difference:+.2f}",
                                 _fmt(r.ci95), _fmt(r.q_value, ".3f")) for r in controls.itertuples())
    if not upper.empty:
        shown = Counter((c[0], c[3], c[5], c[10]) for _, c in tables["upper"]["rows"])
        assert shown == Counter((r.task, method_label(r.method), str(r.epochs), _fmt(r.difference, "+.2f"))
                                for r in upper.itertuples())


@pytest.mark.parametrize("name", REFERENCES)
def test_images_are_the_folders_pngs_linked_by_their_paths(name, pages):
    images = pages[name].images
    on_disk = [p.relative_to(RESULTS / name).as_posix() for p in (RESULTS / name).rglob("*.png")]
    assert all(p.split("/")[0] in IMAGE_FOLDERS for p in on_disk)
    order = sorted(on_disk, key=lambda p: (list(IMAGE_FOLDERS).index(p.split("/")[0]), p))
    assert [img["alt"] for img in images] == order  # every PNG of the folder, folder by folder, by name
    for img in images:
        assert img["src"] == img["alt"]  # the path inside the folder, relative to the page beside it
        assert (RESULTS / name / img["src"]).read_bytes().startswith(PNG)


@pytest.mark.parametrize("name", REFERENCES)
def test_nothing_is_loaded_from_outside_the_page(name, built, pages):
    page = pages[name]
    for tag, attribute, value in page.urls:
        assert not value.lower().startswith(("http:", "https:", "//", "ftp:")), (tag, attribute, value[:80])
        figure = tag == "img" and value.split("/")[0] in IMAGE_FOLDERS and (RESULTS / name / value).is_file()
        assert value.startswith("#") or figure or value == "leaderboard.csv", (tag, value[:80])
    assert page.tags["script"] == 1 and page.tags["style"] == 1 and page.tags["link"] == 0
    assert not any(a == "src" for tag, a, _ in page.urls if tag == "script")
    style = built[name].split("<style>", 1)[1].split("</style>", 1)[0]
    assert "url(" not in style and "@import" not in style


@pytest.mark.parametrize("name", REFERENCES)
def test_the_committed_page_is_what_the_builder_makes_now(name, built):
    committed = RESULTS / name / PAGE_NAME
    assert committed.is_file(), f"no {committed}: bench leaderboard --results-dir results/{name} --html"
    assert committed.read_text(encoding="utf-8") == built[name], (
        f"{committed} is stale: regenerate it with bench leaderboard --results-dir results/{name} --html")


def test_the_page_is_a_pure_function_of_the_folders_files(tmp_path, built):
    name = "synth-scenes-quick"
    copy = tmp_path / "elsewhere" / name
    shutil.copytree(RESULTS / name, copy, ignore=shutil.ignore_patterns(PAGE_NAME))
    assert build_page(copy) == build_page(RESULTS / name) == built[name]


def _write_leaderboard(folder: Path, rows: list[dict[str, str]]) -> None:
    folder.mkdir(parents=True)
    with open(folder / "leaderboard.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LEADERBOARD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_every_string_is_escaped(tmp_path):
    nasty = '<script>alert("x")</script>&amp;'
    rows = [{"run_id": f"r{seed}", "created_at": f"2026-01-01T00:00:0{seed}+00:00", "task": "synth-svm",
             "method": nasty, "modality": "points", "preset": "quick", "seed": str(seed), "metric": "overall_acc",
             "value": str(50 + seed), "settings": "a=\"b\" c='d'", "git_commit": "abc"} for seed in range(3)]
    _write_leaderboard(tmp_path / "res", rows)
    text = build_page(tmp_path / "res")
    page = Page(text)
    assert "<script>alert" not in text and page.tags["script"] == 1
    (attrs, cells), = page.tables["summary"]["rows"]
    assert cells[3] == nasty and attrs["data-method"] == nasty and cells[4] == "a=\"b\" c='d'"
    assert cells[7:10] == ["51.00", f"{2.4841377118:.2f}", "3"]  # mean ± t(0.975, 2) * 1 / sqrt(3)
    assert page.selects["method"] == ["", nasty]


def test_cli_writes_the_results_folders_page_never_the_references(tmp_path, monkeypatch):
    from ssl3d.bench.cli import main

    reference = RESULTS / "synth-scenes-quick"
    before = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--results-dir", "mine", "--reference", "synth-scenes-quick", "--html"]) == 0
    page = Page((tmp_path / "mine" / PAGE_NAME).read_text(encoding="utf-8"))
    assert page.tables["summary"]["rows"] == [] and page.selects["task"] == [""]
    assert {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()} == before
