"""The papers' comparative claims, checked against the leaderboard, with directions fixed in advance.

Each :class:`Claim` says "on ``task`` / ``modality``, ``metric`` of method A is higher than that of
method B", as one of the four papers states it (``source`` names the table): the direction is the
paper's, written here before any run. :func:`check_claims` compares both methods' per-seed values
(same preset, the same evaluation data) by a paired t-test where both ran the same seeds, Welch's
otherwise, and the page's claims form one family for Benjamini-Hochberg (identical comparisons
counted once):

* **holds** - the one-sided test in the paper's direction has q < alpha;
* **refuted** - the two-sided test has q < alpha and the difference is opposite to the paper's;
* **inconclusive** - neither (the note says whether the direction agrees);
* **not run** - fewer than two seeds of either method.

A one-sided test in the direction the data happen to show can never refute. With three seeds a
side these tests have little power: "inconclusive" is the honest answer for small effects.
Definitions: docs/protocols.md#statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ssl3d.bench.report.multiplicity import ALPHA, add_qvalues, distinct_tests, format_p
from ssl3d.bench.run.results import text_columns
from ssl3d.core.stats import ci95_halfwidth, compare_seeds

__all__ = ["CLAIMS", "Claim", "check_claims", "claim_rows", "claims_markdown", "claims_on_datasets", "claims_verdicts"]


@dataclass(frozen=True)
class Claim:
    """One comparative claim: ``metric(better) > metric(worse)`` on ``task`` / ``modality``."""

    paper: str  # switchvae, parae, cmcv, cmic
    source: str  # where the paper makes it ("Table 2", "Sec. 4.3")
    statement: str  # the claim in words
    task: str  # our task that tests it
    modality: str  # evaluated modality
    metric: str  # higher is better
    better: str  # method the paper finds better
    worse: str  # method the paper finds worse
    worse_settings: str = ""  # the worse side's --set overrides ("train.epochs=0": the same network untrained)


UNTRAINED = "train.epochs=0"  # the method's own networks at their random initialisation

CLAIMS: tuple[Claim, ...] = (
    Claim("switchvae", "Table 3", "SwitchVAE pretraining beats its untrained network (voxels)",
          "synth-svm", "voxels", "overall_acc", "switchvae", "switchvae", UNTRAINED),
    Claim("switchvae", "Table 3", "SwitchVAE pretraining beats its untrained network (views)",
          "synth-svm", "views", "overall_acc", "switchvae", "switchvae", UNTRAINED),
    Claim("switchvae", "Table 2", "SwitchVAE's view latents classify better than an image-only VAE's",
          "synth-svm", "views", "overall_acc", "switchvae", "image-vae"),
    Claim("switchvae", "Table 2", "SwitchVAE's voxel latents classify better than a voxel-only VAE's",
          "synth-svm", "voxels", "overall_acc", "switchvae", "voxel-vae"),
    Claim("switchvae", "Table 1", "the contrastive loss improves reconstruction from views",
          "synth-recon", "views", "iou", "switchvae", "switchvae-nocontrast"),
    Claim("switchvae", "Table 1", "the contrastive loss improves reconstruction from voxels",
          "synth-recon", "voxels", "iou", "switchvae", "switchvae-nocontrast"),
    Claim("switchvae", "Table 1", "SwitchVAE reconstructs from views better than an image-only VAE",
          "synth-recon", "views", "iou", "switchvae", "image-vae"),
    Claim("switchvae", "Table 1", "SwitchVAE reconstructs from voxels better than a voxel-only VAE",
          "synth-recon", "voxels", "iou", "switchvae", "voxel-vae"),
    Claim("parae", "Tables 1-2", "ParAE pretraining beats a random PointNet (linear SVM)",
          "synth-svm", "points", "overall_acc", "parae-pointnet", "random-pointnet"),
    Claim("parae", "Tables 1-2", "ParAE pretraining beats a random DGCNN (linear SVM)",
          "synth-svm", "points", "overall_acc", "parae-dgcnn", "random-dgcnn"),
    Claim("parae", "Table 1", "ParAE on DGCNN beats ParAE on PointNet",
          "synth-svm", "points", "overall_acc", "parae-dgcnn", "parae-pointnet"),
    Claim("parae", "Table 3", "ParAE pretraining helps part segmentation (DGCNN; paper: fine-tuned, S3DIS)",
          "synth-seg", "points", "instance_miou", "parae-dgcnn", "random-dgcnn"),
    Claim("parae", "Tables 1-2", "ParAE pretraining beats its untrained PointNet (linear SVM)",
          "synth-svm", "points", "overall_acc", "parae-pointnet", "parae-pointnet", UNTRAINED),
    Claim("parae", "Tables 1-2", "ParAE pretraining beats its untrained DGCNN (linear SVM)",
          "synth-svm", "points", "overall_acc", "parae-dgcnn", "parae-dgcnn", UNTRAINED),
    Claim("switchvae", "Table 2", "voxel-VAE pretraining beats its untrained network",
          "synth-svm", "voxels", "overall_acc", "voxel-vae", "voxel-vae", UNTRAINED),
    Claim("switchvae", "Table 2", "image-VAE pretraining beats its untrained network",
          "synth-svm", "views", "overall_acc", "image-vae", "image-vae", UNTRAINED),
    Claim("cmcv", "Tables 3, 6", "CM-CV pretraining beats its untrained network (points)",
          "synth-svm", "points", "overall_acc", "cmcv", "cmcv", UNTRAINED),
    Claim("cmcv", "Tables 3, 6", "CM-CV pretraining beats its untrained network (views)",
          "synth-svm", "views", "overall_acc", "cmcv", "cmcv", UNTRAINED),
    Claim("cmcv", "Table 3", "adding the cross-view loss improves point features (linear SVM)",
          "synth-svm", "points", "overall_acc", "cmcv", "cm"),
    Claim("cmcv", "Table 3", "adding the cross-view loss improves image features (linear SVM)",
          "synth-svm", "views", "overall_acc", "cmcv", "cm"),
    Claim("cmcv", "Table 4", "adding the cross-view loss improves point-feature retrieval",
          "synth-retrieval", "points", "top1_acc", "cmcv", "cm"),
    Claim("cmcv", "Table 4", "adding the cross-view loss improves image-feature retrieval",
          "synth-retrieval", "views", "top1_acc", "cmcv", "cm"),
    Claim("cmic", "Table 1", "CMIC training beats its untrained networks",
          "synth-ibsr", "image", "top1_acc", "cmic", "cmic", UNTRAINED),
    Claim("cmic", "Table 2", "colour transfer beats HSV jitter",
          "synth-ibsr", "image", "top1_acc", "cmic", "cmic-hsv"),
    Claim("cmic", "Table 2", "HSV jitter beats no colour augmentation",
          "synth-ibsr", "image", "top1_acc", "cmic-hsv", "cmic-noaug"),
    Claim("cmic", "Table 2", "colour transfer beats no colour augmentation",
          "synth-ibsr", "image", "top1_acc", "cmic", "cmic-noaug"),
    Claim("cmic", "Table 2", "the contrastive instance loss beats a triplet loss",
          "synth-ibsr", "image", "top1_acc", "cmic", "cmic-triplet"),
    Claim("cmic", "Table 3", "the category loss improves instance retrieval",
          "synth-ibsr", "image", "top1_acc", "cmic", "cmic-noncat"),
    Claim("cmic", "Table 3", "the category loss improves category-level retrieval",
          "synth-ibsr", "image", "category_acc", "cmic", "cmic-noncat"),
)


def _seed_values(runs: pd.DataFrame, claim: Claim, method: str, preset: str, settings: str = "") -> pd.DataFrame:
    """Per-seed values (latest row per seed): columns data_key, seed, value, for the claim's cell."""
    sel = runs[(runs["task"] == claim.task) & (runs["modality"] == claim.modality) & (runs["metric"] == claim.metric)
               & (runs["method"] == method) & (runs["preset"] == preset) & (runs["settings"] == settings)]
    sel = sel.sort_values("created_at").drop_duplicates(["data_key", "seed"], keep="last")
    return pd.DataFrame({"data_key": sel["data_key"], "seed": sel["seed"].astype(int),
                         "value": sel["value"].astype(float)})


def claims_on_datasets(claims: tuple[Claim, ...], tasks: set[str]) -> tuple[Claim, ...]:
    """Each claim on every dataset of ``tasks`` that has its protocol's task.

    The claims are written against the synth tasks (``synth-svm``); the same statement is checked on
    ``modelnet10-svm`` when ModelNet10 runs are present: only the ``synth-`` prefix changes, never the
    protocol, modality, metric or the methods compared.
    """
    prefixes = {t.split("-", 1)[0] for t in tasks if "-" in t}
    out = []
    for claim in claims:
        suffix = claim.task.split("-", 1)[1] if claim.task.startswith("synth-") else None
        candidates = [f"{p}-{suffix}" for p in sorted(prefixes)] if suffix else [claim.task]
        out.extend(replace(claim, task=t) for t in candidates if t in tasks)
    return tuple(out)


def check_claims(runs: pd.DataFrame, claims: tuple[Claim, ...] | None = None, preset: str = "quick",
                 alpha: float = ALPHA) -> pd.DataFrame:
    """One row per claim: both means, 95% CIs and n, the test, the difference and the verdict.

    Args:
        runs: ``leaderboard.csv`` rows (one per run and metric).
        claims: the claims to check; default :data:`CLAIMS` on every dataset present in ``runs``
            (:func:`claims_on_datasets`).
        preset: the preset whose runs are compared.
        alpha: the false discovery rate of the verdicts (:func:`claims_verdicts`).
    """
    table, sides = claim_rows(runs, claims, preset)
    return claims_verdicts(table, sides, alpha)


def claim_rows(runs: pd.DataFrame, claims: tuple[Claim, ...] | None = None,
               preset: str = "quick") -> tuple[pd.DataFrame, list[tuple[dict[int, float], dict[int, float]]]]:
    """The claims' rows before their verdicts, and each row's two per-seed value maps."""
    runs = text_columns(runs, ("preset", "settings", "data_key"))
    if claims is None:
        claims = claims_on_datasets(CLAIMS, set(runs["task"].astype(str)) if not runs.empty else set())
    rows, sides = [], []
    for claim in claims:
        a, b = _shared_data(_seed_values(runs, claim, claim.better, preset),
                            _seed_values(runs, claim, claim.worse, preset, claim.worse_settings))
        worse = f"{claim.worse} [{claim.worse_settings}]" if claim.worse_settings else claim.worse
        c = compare_seeds(a, b)
        rows.append({"preset": preset, "paper": claim.paper, "source": claim.source, "claim": claim.statement,
                     "task": claim.task, "modality": claim.modality, "metric": claim.metric, "better": claim.better,
                     "worse": worse, "direction": f"{claim.better} > {worse}",
                     "mean_better": np.mean(list(a.values())) if a else np.nan, "ci95_better": ci95_halfwidth(list(a.values())),
                     "n_better": len(a), "mean_worse": np.mean(list(b.values())) if b else np.nan,
                     "ci95_worse": ci95_halfwidth(list(b.values())), "n_worse": len(b), "test": c.test,
                     "difference": c.difference, "p_value": c.p_greater, "p_two_sided": c.p_two_sided})
        sides.append((a, b))
    return pd.DataFrame(rows), sides


def _shared_data(a: pd.DataFrame, b: pd.DataFrame) -> tuple[dict[int, float], dict[int, float]]:
    """Both sides' per-seed values on the evaluation data they share most seeds of."""
    shared = sorted(set(a["data_key"]) & set(b["data_key"]), key=lambda k: -(a["data_key"] == k).sum())
    if not shared:
        return {}, {}
    pick = lambda side: dict(zip(side.loc[side["data_key"] == shared[0], "seed"],  # noqa: E731
                                 side.loc[side["data_key"] == shared[0], "value"]))
    return pick(a), pick(b)


def claims_verdicts(table: pd.DataFrame, sides: list[tuple[dict, dict]], alpha: float = ALPHA) -> pd.DataFrame:
    """Verdicts at false discovery rate ``alpha`` over the table's distinct claims.

    ``q_value`` is the Benjamini-Hochberg q of the one-sided p in the paper's direction (``p_value``),
    ``q_two_sided`` that of the two-sided p; identical comparisons share a place in the family.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if table.empty:
        return table
    run = (table["n_better"] >= 2) & (table["n_worse"] >= 2)
    out = add_qvalues(table.assign(p_value=table["p_value"].where(run)), sides, "p_value", "q_value")
    out = add_qvalues(out.assign(p_two_sided=out["p_two_sided"].where(run)), sides, "p_two_sided", "q_two_sided")
    out["verdict"] = [_verdict(r, alpha) for r in out.itertuples()]
    return out


def _verdict(r, alpha: float) -> str:
    if r.n_better < 2 or r.n_worse < 2:
        return "not run"
    if r.test == "equal":
        return "inconclusive (equal)"
    if r.q_value < alpha:
        return "holds"
    if r.q_two_sided < alpha and r.difference < 0:
        return "refuted"
    return f"inconclusive ({'same' if r.difference > 0 else 'opposite'} direction)"


def claims_markdown(table: pd.DataFrame, alpha: float = ALPHA) -> str:
    """The claims table as markdown, with a count of verdicts."""
    if table.empty:
        return "### The papers' claims on this leaderboard\n\nNo claims checked.\n"
    lines = ["### The papers' claims on this leaderboard\n",
             "Each claim's direction is the paper's, fixed before any run. Paired t-test over seeds where both "
             f"sides ran the same seeds (else Welch's); q = Benjamini-Hochberg over the {distinct_tests(table)} "
             f"distinct claims of this page (a row marked \"= N\" repeats claim N's test); holds: one-sided q < {alpha} "
             f"in the paper's direction; refuted: two-sided q < {alpha} the other way. Cells mean ± 95% CI (n).\n",
             "| # | paper | source | claim | task / modality / metric | paper's direction | better | worse | test | "
             "p (paper's direction) | q | p two-sided | q two-sided | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(mean: float, ci: float, n: int) -> str:
        if np.isnan(mean):
            return f"({n})"
        return f"{mean:.2f}" + ("" if np.isnan(ci) else f" ± {ci:.2f}") + f" ({n})"

    for i, r in enumerate(table.itertuples(), start=1):
        test = f"= {int(r.same_test_as) + 1}" if r.same_test_as >= 0 else r.test
        lines.append(f"| {i} | {r.paper} | {r.source} | {r.claim} | {r.task} / {r.modality} / {r.metric} | "
                     f"{r.direction} | {r.better}: {cell(r.mean_better, r.ci95_better, r.n_better)} | "
                     f"{r.worse}: {cell(r.mean_worse, r.ci95_worse, r.n_worse)} | {test} | {format_p(r.p_value)} | "
                     f"{format_p(r.q_value)} | {format_p(r.p_two_sided)} | {format_p(r.q_two_sided)} | "
                     f"**{r.verdict}** |")
    counts = table["verdict"].str.split(" ").str[0].value_counts()
    lines.append("\n" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "\n")
    return "\n".join(lines)
