"""The papers' comparative claims, checked against the leaderboard.

Each :class:`Claim` says "on ``task`` / ``modality``, ``metric`` of method A is
higher than that of method B", as one of the four papers states it for its
own data (the ``source`` names the table). :func:`check_claims` takes the
per-seed values of both methods from ``leaderboard.csv`` (same preset, no
``--set`` overrides, the same evaluation data) and tests the claim with
Welch's one-sided t-test:

* **holds** - A's mean is higher and :math:`p < \\alpha` for "A > B";
* **refuted** - A's mean is lower and :math:`p < \\alpha` for "B > A";
* **inconclusive** - neither (the direction agrees or not, but the seeds do
  not separate the two; the verdict says which);
* **not run** - fewer than two seeds of either method.

With three seeds a side this test has little power: "inconclusive" is the
honest answer for small effects, and a "holds" on synth says nothing about
the paper's dataset (nor does a "refuted").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from ssl3d.bench.run.results import text_columns
from ssl3d.core.stats import ci95_halfwidth

__all__ = ["CLAIMS", "Claim", "check_claims", "claims_markdown", "claims_on_datasets"]


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


def _seed_values(runs: pd.DataFrame, claim: Claim, method: str, preset: str, settings: str = "") -> pd.Series:
    """Per-seed values (latest row per seed) indexed by data_key, for the claim's cell."""
    sel = runs[(runs["task"] == claim.task) & (runs["modality"] == claim.modality) & (runs["metric"] == claim.metric)
               & (runs["method"] == method) & (runs["preset"] == preset) & (runs["settings"] == settings)]
    sel = sel.sort_values("created_at").drop_duplicates(["data_key", "seed"], keep="last")
    return sel.set_index("data_key")["value"].astype(float)


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
                 alpha: float = 0.05) -> pd.DataFrame:
    """One row per claim: both means, 95% CIs, n, Welch's one-sided p-value and the verdict.

    Args:
        runs: ``leaderboard.csv`` rows (one per run and metric).
        claims: the claims to check; default :data:`CLAIMS` on every dataset present in ``runs``
            (:func:`claims_on_datasets`).
        preset: the preset whose runs are compared.
        alpha: significance level of the one-sided tests.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    runs = text_columns(runs, ("preset", "settings", "data_key"))
    if claims is None:
        claims = claims_on_datasets(CLAIMS, set(runs["task"].astype(str)) if not runs.empty else set())
    rows = []
    for claim in claims:
        a = _seed_values(runs, claim, claim.better, preset)
        b = _seed_values(runs, claim, claim.worse, preset, claim.worse_settings)
        shared = sorted(set(a.index) & set(b.index), key=lambda k: -(a.index == k).sum())  # most-seeded first
        va = a[a.index == shared[0]].to_numpy() if shared else np.array([])
        vb = b[b.index == shared[0]].to_numpy() if shared else np.array([])
        row = {"preset": preset, "paper": claim.paper, "source": claim.source, "claim": claim.statement, "task": claim.task,
               "modality": claim.modality, "metric": claim.metric, "better": claim.better,
               "worse": f"{claim.worse} [{claim.worse_settings}]" if claim.worse_settings else claim.worse,
               "mean_better": np.nan, "ci95_better": np.nan, "n_better": len(va),
               "mean_worse": np.nan, "ci95_worse": np.nan, "n_worse": len(vb), "p_value": np.nan}
        if len(va) < 2 or len(vb) < 2:
            rows.append({**row, "verdict": "not run"})
            continue
        row.update(mean_better=va.mean(), ci95_better=ci95_halfwidth(va), mean_worse=vb.mean(),
                   ci95_worse=ci95_halfwidth(vb))
        if np.ptp(np.concatenate([va, vb])) == 0:  # identical constants: no evidence either way
            rows.append({**row, "p_value": 1.0, "verdict": "inconclusive (equal)"})
            continue
        greater = float(stats.ttest_ind(va, vb, equal_var=False, alternative="greater").pvalue)
        less = float(stats.ttest_ind(va, vb, equal_var=False, alternative="less").pvalue)
        if va.mean() > vb.mean() and greater < alpha:
            verdict, p = "holds", greater
        elif va.mean() < vb.mean() and less < alpha:
            verdict, p = "refuted", less
        else:
            direction = "same direction" if va.mean() > vb.mean() else "opposite direction"
            verdict, p = f"inconclusive ({direction})", greater
        rows.append({**row, "p_value": p, "verdict": verdict})
    return pd.DataFrame(rows)


def claims_markdown(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """The claims table as markdown, with a count of verdicts."""
    if table.empty:
        return "### The papers' claims on this leaderboard\n\nNo claims checked.\n"
    lines = ["### The papers' claims on this leaderboard\n",
             f"Welch's one-sided t-test over seeds, alpha = {alpha}; cells mean ± 95% CI (n).\n",
             "| paper | source | claim | task / modality / metric | better | worse | p | verdict |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(mean: float, ci: float, n: int) -> str:
        if np.isnan(mean):
            return f"({n})"
        return f"{mean:.2f}" + ("" if np.isnan(ci) else f" ± {ci:.2f}") + f" ({n})"

    for r in table.itertuples():
        p = "" if np.isnan(r.p_value) else f"{r.p_value:.3f}"
        lines.append(f"| {r.paper} | {r.source} | {r.claim} | {r.task} / {r.modality} / {r.metric} | "
                     f"{r.better}: {cell(r.mean_better, r.ci95_better, r.n_better)} | "
                     f"{r.worse}: {cell(r.mean_worse, r.ci95_worse, r.n_worse)} | {p} | **{r.verdict}** |")
    counts = table["verdict"].str.split(" ").str[0].value_counts()
    lines.append("\n" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "\n")
    return "\n".join(lines)
