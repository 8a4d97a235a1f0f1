"""The result store: one ``result.json`` per run and one leaderboard row per metric.

``results/local/runs/<run-id>/result.json`` holds everything that determines and
describes a run; ``results/local/leaderboard.csv`` gets one row per metric. Both are
written atomically (temp file + rename), and the CSV append happens under a
file lock, so two ``bench run`` processes finishing at the same moment both
land their rows.

The result files are the source of truth: a ``leaderboard.csv`` whose header
is not a leaderboard header is kept as a backup and rebuilt from them, never
rewritten; a line that is not a valid row is skipped with its file and line
number, and the rows around it still count.

On a shared filesystem (NFS, Lustre: sweeps on several nodes) a lock on one CSV
is not to be trusted, so jobs of ``bench suite --launcher ...`` call
``save(result, leaderboard=False)``: each writes only its own ``result.json``,
by atomic rename, and nothing else. :meth:`ResultStore.sync_leaderboard`
(``bench leaderboard``, and the sweep's driver when it finishes) then writes the
CSV from the result files plus the CSV rows that have no result file; it is
idempotent, and no number of concurrent writers can lose a row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from filelock import FileLock

from ssl3d.core.io import atomic_path, atomic_write_json, atomic_write_text, check_file, os_error_reason, write_failed
from ssl3d.core.errors import UserError
from ssl3d.bench.run.settings_label import settings_label  # noqa: F401 - its old import path

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LEADERBOARD_COLUMNS = (
    "run_id", "created_at", "task", "method", "modality", "preset", "seed", "metric", "value",
    "pretrain_data", "dataset_version", "data_key", "settings", "git_commit",
)
# what an older version's file must have for its rows to mean anything; the rest may be missing (empty)
REQUIRED_COLUMNS = ("run_id", "task", "method", "seed", "metric", "value")
MAX_LOGGED_SKIPS = 20  # one warning per bad line up to here, then a count

#: the user's own results folder under ``results/``, beside the committed references (and git-ignored)
LOCAL_RESULTS = "local"


def default_results_dir() -> Path:
    """``$SSL3D_RESULTS`` or ``./results/local``."""
    return Path(os.environ.get("SSL3D_RESULTS") or Path("results") / LOCAL_RESULTS)


CHECKOUT_RESULTS = Path(__file__).resolve().parents[2] / "results"  # each folder but LOCAL_RESULTS: a reference


def check_not_reference(folder: str | os.PathLike[str], what: str) -> None:
    """Refuse runs into (or below) a committed reference folder unless ``$SSL3D_WRITE_REFERENCE=1`` (maintainers)."""
    path, base = Path(folder).resolve(), CHECKOUT_RESULTS.resolve()
    inside = path.relative_to(base).parts if path.is_relative_to(base) else ()
    if inside and inside[0] != LOCAL_RESULTS and os.environ.get("SSL3D_WRITE_REFERENCE") != "1":
        where = f"{'in ' * (len(inside) > 1)}the committed reference {CHECKOUT_RESULTS / inside[0]}"
        raise UserError(f"{what} {folder} is {where}: your runs go to results/{LOCAL_RESULTS} (the default) or another "
                        "folder; a maintainer regenerating it sets SSL3D_WRITE_REFERENCE=1 (docs/leaderboard.md)")


class LeaderboardFormatError(UserError, ValueError):
    """``leaderboard.csv`` has a header line that names no usable set of leaderboard columns."""


class SkippedLine(NamedTuple):
    """A line of ``leaderboard.csv`` that was left out, and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ParsedLeaderboard:
    """The readable rows of ``leaderboard.csv`` (cells as text) and the lines that were not."""

    header: list[str]
    rows: list[dict[str, str]]
    skipped: list[SkippedLine]


@dataclass
class RebuildReport:
    """What :meth:`ResultStore.rebuild_leaderboard` did."""

    runs: int  # result.json files read
    rows: int  # leaderboard rows written
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (result.json, why), skipped
    backup: Path | None = None  # where the replaced leaderboard.csv went (None: nothing was replaced)


def parse_leaderboard(path: Path, text: str) -> ParsedLeaderboard:
    """Parse ``leaderboard.csv`` text line by line; lines that are not a valid row are skipped, not guessed.

    One line is one row: a broken quote then spoils only its own line, never the rest of the file.
    A header with fewer columns (a file from an older version) is read with the others empty.

    Raises:
        LeaderboardFormatError: the header line is not a set of leaderboard columns.
    """
    lines = text.removeprefix("\ufeff").split("\n")  # a BOM, as spreadsheet programs write, is no column name
    header = [name.strip() for name in _split_line(lines[0].rstrip("\r"))] if lines[0].strip() else []
    unknown = [name for name in header if name not in LEADERBOARD_COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        problem = (f"unknown column(s) {', '.join(map(repr, unknown[:3]))}" if unknown else
                   f"no {', '.join(missing)} column" if missing else "a repeated column name")
        raise LeaderboardFormatError(f"{path}:1: the header line is not a leaderboard header ({problem}); "
                                     f"expected {','.join(LEADERBOARD_COLUMNS)}")
    rows, skipped = [], []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(header, line))
        except ValueError as exc:
            skipped.append(SkippedLine(path, number, str(exc)))
    return ParsedLeaderboard(header, rows, skipped)


def _split_line(line: str) -> list[str]:
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise ValueError(f"not valid CSV ({exc})") from None


def _parse_row(header: list[str], line: str) -> dict[str, str]:
    fields = _split_line(line)
    if len(fields) != len(header):
        raise ValueError(f"{len(fields)} fields, expected {len(header)}")
    row = dict(zip(header, fields))
    try:
        int(row["seed"])
    except ValueError:
        raise ValueError(f"seed {row['seed']!r} is not an integer") from None
    try:
        value = float(row["value"])
    except ValueError:
        raise ValueError(f"value {row['value']!r} is not a number") from None
    if not math.isfinite(value):  # an inf or nan would make every mean and CI of its group inf or nan
        raise ValueError(f"value {row['value']!r} is not a finite number")
    return row


def _csv_text(rows: Iterable[dict[str, Any]], header: bool) -> str:
    """Rows as CSV text under the current columns; a line break inside a cell becomes a space (one row, one line)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LEADERBOARD_COLUMNS, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: " ".join(v.splitlines()) if isinstance(v, str) else v for k, v in row.items()})
    return buf.getvalue()


class ResultStore:
    """Reads and writes results under one folder."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_results_dir()

    @property
    def leaderboard_path(self) -> Path:  # a folder of that name is a user error, raised at first touch
        check_file(self.root / "leaderboard.csv", "; move it away (`bench leaderboard` writes it again from runs/)")
        return self.root / "leaderboard.csv"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def _lock(self) -> FileLock:
        return FileLock(str(self.leaderboard_path) + ".lock", timeout=120)

    def save(self, result: dict[str, Any], leaderboard: bool = True) -> Path:
        """Write ``result.json`` and (with ``leaderboard``) append its metric rows to the leaderboard.

        ``leaderboard=False`` is for jobs on shared filesystems: the CSV is left to :meth:`sync_leaderboard`.
        """
        path = self.run_dir(result["run_id"]) / "result.json"
        try:
            atomic_write_json(path, result)
        except OSError as exc:  # a full disk, a read-only folder: nothing half-written is left
            raise write_failed(path, exc) from exc
        if leaderboard:
            try:
                self.append_rows(leaderboard_rows(result))
            except OSError as exc:  # the result is saved: `bench leaderboard` adds the rows from its file
                log.warning("%s is saved, but its rows are not in %s (%s); `bench leaderboard` adds them", path,
                            self.root / "leaderboard.csv", os_error_reason(exc))
        return path

    def read_results(self) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
        """Every readable ``runs/*/result.json`` (oldest first) and the unreadable ones with the reason."""
        results, unreadable = [], []
        for result_path in sorted(self.root.glob("runs/*/result.json")):
            try:
                result = json.loads(result_path.read_text(encoding="utf-8"))
                if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
                    raise ValueError("no 'metrics' mapping")
                results.append(result)
            except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
                log.warning("%s: unreadable result file, skipped: %s", result_path, exc)
                unreadable.append((result_path, str(exc)))
        results.sort(key=lambda r: (str(r.get("created_at") or ""), str(r.get("run_id") or "")))
        return results, unreadable

    def merged_rows(self) -> tuple[list[dict[str, Any]], ParsedLeaderboard | None, list[tuple[Path, str]]]:
        """Rows of every result file plus the CSV's rows whose run has no result file; nothing is written.

        Returns (rows sorted by creation time and run id, the parsed CSV or None when it is absent or has
        no leaderboard header, the unreadable result files). The union is what :meth:`sync_leaderboard` writes.
        """
        results, unreadable = self.read_results()
        parsed = None
        path = self.leaderboard_path
        if path.exists():
            try:
                parsed = parse_leaderboard(path, path.read_text(encoding="utf-8-sig"))
            except LeaderboardFormatError as exc:
                log.warning("%s", exc)
        rows: list[dict[str, Any]] = [row for result in results for row in leaderboard_rows(result)]
        known = {str(r.get("run_id")) for r in results}
        orphans = [row for row in (parsed.rows if parsed else []) if row["run_id"] not in known]
        order = {id(row): i for i, row in enumerate([*rows, *orphans])}  # stable within a run: metric order
        merged = sorted([*rows, *orphans], key=lambda r: (str(r.get("created_at") or ""), str(r["run_id"]),
                                                          order[id(r)]))
        return merged, parsed, unreadable

    def sync_leaderboard(self, only_if_missing: bool = False) -> RebuildReport:
        """Make ``leaderboard.csv`` hold every result file's rows (and keep rows that have none); idempotent.

        Written only when its text would change (with ``only_if_missing``: only when some result file has no
        row yet). Lines that could not be parsed (or a file without a leaderboard header) are kept in a
        ``leaderboard-backup-*.csv`` copy before the rewrite.
        """
        if only_if_missing:  # decided without the lock first: a folder in sync (read-only, say) is only read
            rows, parsed, unreadable = self.merged_rows()
            if {str(r["run_id"]) for r in rows} <= {r["run_id"] for r in (parsed.rows if parsed else [])}:
                return RebuildReport(runs=len({r["run_id"] for r in rows}), rows=len(rows), unreadable=unreadable)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            rows, parsed, unreadable = self.merged_rows()
            text = _csv_text(rows, header=True)
            path, backup = self.leaderboard_path, None
            old = path.read_bytes() if path.exists() else None
            listed = {r["run_id"] for r in parsed.rows} if parsed else set()
            missing = any(str(r["run_id"]) not in listed for r in rows)
            if old != text.encode("utf-8") and (missing or not only_if_missing):
                if old is not None and (parsed is None or parsed.skipped):
                    backup = self._backup_path()
                    with atomic_path(backup) as tmp:
                        shutil.copyfile(path, tmp)
                    log.warning("%s had unreadable lines; the previous file is kept as %s", path, backup)
                atomic_write_text(path, text)
            return RebuildReport(runs=len({r["run_id"] for r in rows}), rows=len(rows), unreadable=unreadable,
                                 backup=backup)

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to ``leaderboard.csv`` under a lock, rewriting it atomically.

        Lines already there stay as they are, bad ones included. A file whose header is not a leaderboard
        header is never rewritten row by row: it is kept as a backup and the leaderboard is rebuilt
        from the ``result.json`` files (see :meth:`rebuild_leaderboard`).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            path = self.leaderboard_path
            existing = path.read_text(encoding="utf-8-sig") if path.exists() else ""
            if not existing.strip():
                atomic_write_text(path, _csv_text(rows, header=True))
                return
            try:
                parsed = parse_leaderboard(path, existing)
            except LeaderboardFormatError as exc:
                log.warning("%s", exc)
                self._rebuild_locked(extra_rows=rows)
                return
            if parsed.header == list(LEADERBOARD_COLUMNS):
                existing += "" if existing.endswith("\n") else "\n"
                atomic_write_text(path, existing + _csv_text(rows, header=False))
            elif not parsed.skipped:  # an older version's columns, every line readable: migrate in place
                atomic_write_text(path, _csv_text([*parsed.rows, *rows], header=True))
            else:
                log.warning("%s has older columns and unreadable lines (first: %s)", path, parsed.skipped[0])
                self._rebuild_locked(extra_rows=rows)

    def rebuild_leaderboard(self) -> RebuildReport:
        """Write ``leaderboard.csv`` afresh from every ``runs/*/result.json`` (the source of truth).

        Idempotent. Unreadable result files are named in a warning and skipped. A leaderboard file
        that would change is first copied to ``leaderboard-backup-<UTC time>.csv`` beside it, so rows
        without a result file (or lines nothing could parse) are never lost.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            return self._rebuild_locked()

    def _rebuild_locked(self, extra_rows: Iterable[dict[str, Any]] = ()) -> RebuildReport:
        results, unreadable = self.read_results()
        rows = [row for result in results for row in leaderboard_rows(result)]
        known = {str(row["run_id"]) for row in rows}
        rows += [row for row in extra_rows if str(row.get("run_id")) not in known]  # not saved as result.json
        text = _csv_text(rows, header=True)
        path, backup = self.leaderboard_path, None
        if path.exists() and path.read_bytes() != text.encode("utf-8"):
            backup = self._backup_path()
            with atomic_path(backup) as tmp:
                shutil.copyfile(path, tmp)
            log.warning("%s is rebuilt from %d result files in %s; the previous file is kept as %s",
                        path, len(results), self.root / "runs", backup)
        atomic_write_text(path, text)
        return RebuildReport(runs=len(results), rows=len(rows), unreadable=unreadable, backup=backup)

    def _backup_path(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        candidate, n = self.root / f"leaderboard-backup-{stamp}.csv", 1
        while candidate.exists():  # two rebuilds in one second (the lock is held: no race)
            candidate, n = self.root / f"leaderboard-backup-{stamp}-{n}.csv", n + 1
        return candidate

    def read_leaderboard_checked(self) -> tuple[pd.DataFrame, list[SkippedLine]]:
        """The leaderboard's readable rows as a DataFrame, and the lines that were skipped (each logged).

        ``seed`` is an int and ``value`` a float; an empty text cell is NaN, as pandas reads it.

        Raises:
            LeaderboardFormatError: the header line is not a leaderboard header.
        """
        import pandas as pd

        path = self.leaderboard_path
        if not path.exists():
            return pd.DataFrame(columns=LEADERBOARD_COLUMNS), []
        parsed = parse_leaderboard(path, path.read_text(encoding="utf-8-sig"))
        for skipped in parsed.skipped[:MAX_LOGGED_SKIPS]:
            log.warning("skipped %s", skipped)
        if len(parsed.skipped) > MAX_LOGGED_SKIPS:
            log.warning("... and %d more malformed lines of %s", len(parsed.skipped) - MAX_LOGGED_SKIPS, path)
        frame = pd.DataFrame(parsed.rows, columns=list(LEADERBOARD_COLUMNS), dtype=object)
        frame = frame.mask(frame == "")
        frame["seed"] = frame["seed"].astype(int)
        frame["value"] = frame["value"].astype(float)
        return frame, parsed.skipped

    def read_leaderboard(self) -> pd.DataFrame:
        """The leaderboard as a pandas DataFrame (empty when there is none); see :meth:`read_leaderboard_checked`."""
        return self.read_leaderboard_checked()[0]


def text_columns(frame, columns):
    """A copy of ``frame`` whose ``columns`` are strings, '' where missing (NaN or no such column).

    Grouping keys such as ``settings`` may be empty, and pandas reads an empty CSV cell as NaN,
    which never equals itself: compare and group on the text form.
    """
    frame = frame.copy()
    for col in columns:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "").astype(str) if col in frame else ""
    return frame


def leaderboard_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One leaderboard row per metric of a result."""
    common = {k: result.get(k) for k in LEADERBOARD_COLUMNS if k not in ("metric", "value")}
    return [{**common, "metric": name, "value": value} for name, value in result["metrics"].items()]
