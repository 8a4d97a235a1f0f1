"""The ``bench`` command line.

Commands: run, curve, suite, perf, list, leaderboard, reproduce, prepare (``bench CMD --help``;
README.md's usage section shows each).

The flag names are a fixed interface (other tools call them).

A mistake in the command (an unknown name, a bad ``--set``, missing data) is a
:class:`~ssl3d.core.errors.UserError`: one line ``bench CMD: error: ...`` and
exit status 2. Any other exception is shown with its traceback (and the run's
log when the run had started) and exits with status 1. Progress bars are on
only when stderr is a terminal, so logs and pipes get no carriage-return
frames; ``--progress`` / ``--no-progress`` force them on or off.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from importlib import metadata
from typing import Callable, Sequence

from ssl3d.bench.sweep.cli_flags import add_launch_flags
from ssl3d.bench.run.tracking import TRACKERS
from ssl3d.core.config import ConfigError, check_distinct, check_range, parse_set_args
from ssl3d.core.errors import UserError, log_path_of


def _version() -> str:
    try:
        return metadata.version("ssl3d-bench")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line like every other mistake (the usage block is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the flags)\n")


SEED_RANGES = ("[0, inf)", "[0, 4294967295]")  # numpy's and scikit-learn's seeds: [0, 2**32 - 1]


def _int_in(flag: str, interval: str, *more: str) -> Callable[[str], int]:
    """An argparse ``type``: integers in ``interval`` and each of ``more`` (see ssl3d.core.config.check_range)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        try:
            for spec in (interval, *more):
                check_range(flag, value, spec)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def _add_progress_flags(parser: argparse.ArgumentParser) -> None:
    bars = parser.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="progress bars even when stderr is not a terminal")
    bars.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _progress(args: argparse.Namespace) -> bool:
    """Bars only on a terminal unless a flag says otherwise: in a log file or a pipe they are '\\r' noise."""
    return sys.stderr.isatty() if args.progress is None else args.progress


def _add_log_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", choices=TRACKERS, default="csv",
                        help="experiment tracker (default csv: runs/<id>/scalars.csv; the others are extras)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="ssl3d-bench: benchmark self-supervised 3D representations.")
    parser.add_argument("--version", action="version", version=f"ssl3d-bench {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="pretrain (or reuse a cached pretraining) and evaluate one method on one task")
    run.add_argument("--method", required=True, help="registered method name (see `bench list`)")
    run.add_argument("--task", required=True, help="registered task name (see `bench list`)")
    run.add_argument("--preset", default="quick",
                     help="method preset: quick (2-core CPU, minutes; default), cpu (converged on a 2-core CPU) or paper")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_int_in("--seed", *SEED_RANGES), default=None, help="one seed (default 0)")
    seeds.add_argument("--seeds", type=_int_in("--seeds", *SEED_RANGES), nargs="+", default=None,
                       help="several seeds, run one after the other")
    run.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:i]")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting: method.*, train.*, data.* or <protocol>.* (repeatable)")
    run.add_argument("--data-root", default=None, help="data and cache folder (default $SSL3D_DATA or ~/.cache/ssl3d)")
    run.add_argument("--results-dir", default=None, help="results folder (default $SSL3D_RESULTS or ./results/local)")
    run.add_argument("--modality", default=None, help="modality to evaluate (default: the task's first the method embeds)")
    run.add_argument("--pretrain-data", default=None, help="dataset to pretrain on (default: the task's dataset)")
    _add_progress_flags(run)
    _add_log_flag(run)
    run.add_argument("--nproc", type=_int_in("--nproc", "[1, inf)"), default=1,
                     help="pretrain with N processes (DDP via torchrun; one per GPU, or gloo on CPU)")

    curve = sub.add_parser("curve", help="metric vs pretraining epochs from one pretraining per seed (docs/curves.md)")
    curve.add_argument("--method", required=True, help="registered method name")
    curve.add_argument("--task", required=True, help="registered task name")
    curve.add_argument("--epochs", type=_int_in("--epochs", "[0, inf)"), nargs="+", required=True,
                       help="budgets to evaluate (epoch 0, the untrained network, is always added)")
    curve.add_argument("--seeds", type=_int_in("--seeds", *SEED_RANGES), nargs="+", default=[0],
                       help="seeds (default 0)")
    curve.add_argument("--split", choices=["val", "test"], default="val",
                       help="score on a validation part of train (default; for choosing) or on test (reporting only)")
    curve.add_argument("--baseline", default=None, help="random-init method drawn as a reference line (e.g. random-pointnet)")
    for flag, default, text in (("--preset", "quick", "method preset"), ("--device", "auto", "auto, cpu or cuda[:i]"),
                                ("--data-root", None, "data and cache folder"), ("--results-dir", None, "results folder"),
                                ("--modality", None, "modality to evaluate"), ("--pretrain-data", None, "dataset to pretrain on")):
        curve.add_argument(flag, default=default, help=text)
    curve.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="as for bench run")
    _add_progress_flags(curve)

    suite = sub.add_parser("suite", help="run every compatible (method, task, modality) over seeds; resumable")
    suite.add_argument("--preset", default="quick", help="method preset for every run (default quick)")
    suite.add_argument("--seeds", type=_int_in("--seeds", *SEED_RANGES), nargs="+", default=[0, 1, 2],
                       help="seeds (default 0 1 2)")
    suite.add_argument("--methods", default="*", help="method name pattern with wildcards (default *)")
    suite.add_argument("--tasks", default="synth-*",
                       help="task name pattern with wildcards (default synth-*: the embedded synth dataset's tasks)")
    suite.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    suite.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting for every run (repeatable)")
    suite.add_argument("--data-root", default=None, help="data and cache folder")
    suite.add_argument("--results-dir", default=None, help="results folder (default $SSL3D_RESULTS or ./results/local)")
    suite.add_argument("--dry-run", action="store_true", help="list what would run and what is skipped, run nothing")
    _add_progress_flags(suite)
    _add_log_flag(suite)
    add_launch_flags(suite, _int_in)

    perf = sub.add_parser("perf", help="throughput and peak memory of methods and of the data pipeline")
    perf.add_argument("--methods", default="*", help="method name pattern (default *)")
    perf.add_argument("--presets", nargs="+", default=["quick", "paper"], help="presets to measure")
    perf.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    perf.add_argument("--steps", type=_int_in("--steps", "[1, inf)"), default=3, help="timed steps per measurement (after one warm-up)")
    perf.add_argument("--batch-size", type=_int_in("--batch-size", "[1, inf)"), default=None, help="override the preset's batch size")
    perf.add_argument("--out", default="results/local/perf", help="output folder for the CSV and markdown table")
    perf.add_argument("--no-data", action="store_true", help="skip the data-pipeline measurement")

    lst = sub.add_parser("list", help="methods, tasks, datasets and protocols, plugins included")
    lst.add_argument("--json", action="store_true", help="machine-readable output")

    board = sub.add_parser("leaderboard", help="aggregate results over seeds into tables")
    board.add_argument("--results-dir", default=None, help="results folder (default $SSL3D_RESULTS or ./results/local)")
    board.add_argument("--plot", action="store_true", help="also write bar charts and t-SNE plots to <results>/plots/")
    board.add_argument("--html", action="store_true", help="also write <results>/leaderboard.html: one static page "
                       "(sortable, filterable tables; the folder's plots linked); never into a --reference")
    board.add_argument("--reference", default=None, metavar="NAME|DIR",
                       help="also show a committed reference leaderboard (e.g. synth-quick = results/synth-quick); "
                            "read only")

    rep = sub.add_parser("reproduce", help="rerun a committed leaderboard cell's seeds here and compare (docs/protocols.md)")
    rep.add_argument("cell", help="TASK/METHOD[/MODALITY], e.g. synth-svm/random-pointnet")
    rep.add_argument("--reference", default="synth-quick", help="committed leaderboard NAME|DIR (default synth-quick)")
    rep.add_argument("--preset", default=None, help="the cell's preset (needed when the cell has several)")
    rep.add_argument("--settings", default="", help="the cell's settings column, e.g. 'svm.kernel=rbf' (default: none)")
    for flag, text in (("--device", "auto, cpu or cuda[:i]"), ("--data-root", "data and cache folder"),
                       ("--results-dir", "where the reruns go (default $SSL3D_RESULTS or ./results/local)")):
        rep.add_argument(flag, default="auto" if flag == "--device" else None, help=text)
    _add_progress_flags(rep)

    prep = sub.add_parser("prepare", help="generate / download / preprocess a dataset into the cache")
    prep.add_argument("name", help="dataset name (see `bench list`)")
    prep.add_argument("--from", dest="from_paths", nargs="+", action="extend", default=[], metavar="PATH",
                      help="use a local archive (zip/tar*) or an extracted folder (used in place) instead of "
                           "downloading; several for multi-archive datasets (r2n2)")
    prep.add_argument("--no-download", action="store_true",
                      help="fail instead of downloading when the raw files are missing")
    prep.add_argument("--data-root", default=None, help="data and cache folder (default $SSL3D_DATA or ~/.cache/ssl3d)")
    prep.add_argument("--split", nargs="+", default=None, help="splits to prepare (default: all)")
    prep.add_argument("--modalities", nargs="+", default=None,
                      help="modalities to precompute (default: the dataset's usual ones, points for synth)")
    prep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="dataset settings, e.g. data.n_points=2048")
    _add_progress_flags(prep)
    return parser


def _relaunch_with_torchrun(argv: Sequence[str], nproc: int) -> int:
    """``bench run --nproc N ...`` = ``torchrun --nproc-per-node N -m ssl3d.bench.cli run ...``."""
    import subprocess

    rest = list(argv)
    i = rest.index("--nproc")
    del rest[i : i + 2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "ssl3d.bench.cli", *rest]
    return subprocess.call(cmd)


def cmd_run(args: argparse.Namespace) -> int:
    from ssl3d.bench.run.results import ResultStore
    from ssl3d.bench.run.runner import RunSpec, execute

    store = ResultStore(args.results_dir)  # the folder the runner writes to ($SSL3D_RESULTS included)
    overrides = parse_set_args(args.overrides)
    seeds = args.seeds if args.seeds is not None else [args.seed if args.seed is not None else 0]
    for seed in seeds:
        spec = RunSpec(method=args.method, task=args.task, preset=args.preset, seed=seed, device=args.device,
                       overrides=overrides, modality=args.modality, pretrain_data=args.pretrain_data,
                       data_root=args.data_root, results_dir=args.results_dir, progress=_progress(args), log=args.log)
        result = execute(spec)
        if not result:  # a non-zero rank of a distributed run: rank 0 reports
            continue
        metrics = "  ".join(f"{k}={v:.2f}" for k, v in result["metrics"].items())
        print(f"{result['method']} on {result['task']} ({result['modality']}, preset {result['preset']}, "
              f"seed {seed}): {metrics}  [{result['timings']['total_s']:.1f}s]")
        print(f"  result: {store.run_dir(result['run_id']) / 'result.json'}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from ssl3d.bench.sweep.curve import CurveSpec, run_curve
    from ssl3d.bench.run.runner import RunSpec

    run = RunSpec(method=args.method, task=args.task, preset=args.preset, device=args.device,
                  overrides=parse_set_args(args.overrides), modality=args.modality, pretrain_data=args.pretrain_data,
                  data_root=args.data_root, results_dir=args.results_dir, progress=_progress(args))
    out = run_curve(CurveSpec(run, tuple(args.epochs), tuple(args.seeds), args.split, args.baseline))
    print(f"curve: {out['csv']}\nplot: {out['plot']}")
    for metric, epoch in out["knees"].items():
        print(f"  knee ({metric}, validation split): {epoch} epochs")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ssl3d.bench.sweep.cli_flags import launch_config
    from ssl3d.bench.run.results import ResultStore
    from ssl3d.bench.sweep.suite import run_suite

    folder = Path(args.sweep_dir) if args.sweep_dir else ResultStore(args.results_dir).root / "sweep"
    if args.status:
        from ssl3d.bench.sweep.jobs import status_lines

        print("\n".join(status_lines(folder)))
        return 0
    launch = launch_config(args, folder) if args.launcher else None
    outcome = run_suite(methods=args.methods, tasks=args.tasks, preset=args.preset, seeds=tuple(args.seeds),
                        device=args.device, overrides=parse_set_args(args.overrides), data_root=args.data_root,
                        results_dir=args.results_dir, progress=_progress(args), dry_run=args.dry_run, launch=launch,
                        log=args.log)
    return 1 if outcome["failures"] else 0


def cmd_perf(args: argparse.Namespace) -> int:
    from ssl3d.bench.run.perf import run_perf

    run_perf(args.methods, tuple(args.presets), args.device, args.steps, args.batch_size, args.out, not args.no_data)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ssl3d.bench.run.runner import list_everything

    info = list_everything()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("Methods:")
    for name, m in info["methods"].items():
        print(f"  {name:24s} pretrain on {', '.join(m['pretrain']) or '-':18s} embeds {', '.join(m['embed'])}")
    print("Tasks:")
    for name, t in info["tasks"].items():
        print(f"  {name:24s} {t['dataset']} x {t['protocol']} on {', '.join(t['modalities'])}")
        runs = ", ".join(t["supported"]) if t["unsupported"] else "every method"
        print(f"      runs {runs or 'no method'}")
        for reason, methods in _grouped_by_reason(t["unsupported"]).items():
            print(f"      not  {', '.join(methods)}: {reason}")
    print("Datasets:")
    for name, d in info["datasets"].items():
        print(f"  {name:24s} {', '.join(d['modalities'])}")
    print("Protocols:", ", ".join(info["protocols"]))
    for name, err in info["plugin_errors"].items():
        print(f"warning: plugin {name!r} failed to load: {err}", file=sys.stderr)
    return 0


def _grouped_by_reason(unsupported: dict[str, str]) -> dict[str, list[str]]:
    """{reason: methods}: methods refused for the same reason share one line of ``bench list``."""
    grouped: dict[str, list[str]] = {}
    for method, reason in unsupported.items():
        grouped.setdefault(reason, []).append(method)
    return grouped


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from ssl3d.bench.report.leaderboard import reference_markdown, write_leaderboard

    reference = reference_markdown(args.reference) if args.reference else ""  # a bad name fails before any write
    page = None
    if args.html:  # the results folder's page only: a --reference folder is read, never written
        from ssl3d.bench.report.html import write_page as page
    # the rows of result files only (sweep jobs) are added first; a file it cannot write is a warning, not an error
    summary, markdown = write_leaderboard(args.results_dir, plot=args.plot, sync=True, page=page)
    print(markdown)
    if reference:
        print(reference)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ssl3d.bench.report.reproduce import report_markdown, reproduce_cell, write_report

    comparisons, facts = reproduce_cell(args.reference, args.cell, args.preset, args.settings, args.device,
                                        args.data_root, args.results_dir, _progress(args))
    markdown = report_markdown(comparisons, facts)
    print(markdown)
    print(f"report: {write_report(markdown, args.results_dir, args.cell)}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from ssl3d.datasets.prepare import prepare_dataset

    prepare_dataset(
        args.name, root=args.data_root, from_paths=args.from_paths, download=not args.no_download, splits=args.split,
        modalities=args.modalities, overrides=parse_set_args(args.overrides), progress=_progress(args),
    )
    return 0


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of what is still buffered cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path that is not UTF-8 prints escaped instead of failing the run
        getattr(stream, "reconfigure", lambda **_: None)(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handlers = {"perf": cmd_perf, "suite": cmd_suite, "run": cmd_run, "curve": cmd_curve, "list": cmd_list,
                "leaderboard": cmd_leaderboard, "prepare": cmd_prepare, "reproduce": cmd_reproduce}
    try:
        check_distinct("--seeds", getattr(args, "seeds", None) or [], "seed")  # would run (and count) twice
        if args.command == "run" and args.nproc > 1:  # after the checks: not N copies of one error
            return _relaunch_with_torchrun(list(argv) if argv is not None else sys.argv[1:], args.nproc)
        status = handlers[args.command](args)
        sys.stdout.flush()  # a reader that went away shows here, not at exit where Python can only complain about it
        return status
    except BrokenPipeError:  # `bench list | head`: the reader has all it wanted
        _discard_stdout()
        return 128 + signal.SIGPIPE  # what a Unix tool killed by SIGPIPE reports
    except UserError as exc:
        log_path = log_path_of(exc)
        where = f" (run log: {log_path})" if log_path else ""
        print(f"bench {args.command}: error: {exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as exc:  # not a user mistake: the traceback is what it takes to find out what went wrong
        traceback.print_exc()
        log_path = log_path_of(exc)
        where = f"; the run's log is {log_path}" if log_path else ""
        print(f"bench {args.command}: failed with {type(exc).__name__} (traceback above){where}", file=sys.stderr)
        return 1
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
