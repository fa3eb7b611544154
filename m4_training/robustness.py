"""Evaluation under attack, as RAID scores detectors: every labelled document, human ones too, is scored clean and
after each attack (m4_training.attacks); the thresholds for 5% and 1% FPR are set on the CLEAN human documents, so
an attack that makes human texts look machine-written shows as a higher attacked-human FPR, and one that hides
machine texts as a lower TPR. The run's own decision threshold (chosen on validation) is applied too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from m4_training.attacks import ATTACK_RATES, MODEL_ATTACKS, attack_texts, check_attack, load_attack_model
from m4_training.cli import UserError, counted
from m4_training.evaluation import TPR_FPRS, threshold_at_fpr
from m4_training.files import save_figure

logger = logging.getLogger(__name__)


def parse_attacks(
    names: Sequence[str], flag: str, synonym_model: str | None = None, paraphrase_model: str | None = None
) -> dict[str, float]:
    """{attack: rate} from `NAME` or `NAME=RATE` items (`all`: every attack whose model is given; RAID's rates by
    default); a UserError naming `flag` for an unknown name, a bad rate, or a model attack without its model."""
    models = {"synonym": synonym_model, "paraphrase": paraphrase_model}
    attacks = {}
    for item in names:
        name, _, rate_text = item.partition("=")
        if name == "all":
            attacks |= {n: rate for n, rate in ATTACK_RATES.items() if n not in MODEL_ATTACKS or models[n]}
            continue
        try:
            rate = float(rate_text) if rate_text else None
            attacks[name] = check_attack(name, rate)
        except ValueError as error:
            message = str(error) if rate_text == "" or "attack" in str(error) else f"rate {rate_text!r} is not a number"
            raise UserError(f"{flag} {item}: {message}") from error
        if name in MODEL_ATTACKS and not models[name]:
            raise UserError(f"{flag} {name}: needs --{name}_model (a Hugging Face model name or directory)")
    return attacks


def attacked_texts(
    texts: Sequence[str],
    keys: Sequence[str],
    attacks: dict[str, float],
    seed: int,
    normalize: Callable[[str], str],
    synonym_model: str | None = None,
    paraphrase_model: str | None = None,
) -> dict[str, tuple[list[str], int]]:
    """Each attack's texts, normalised as the clean ones were, and how many it could not change (counted).
    The models of synonym and paraphrase are loaded already (`load_attack_models`)."""
    result, models = {}, {"synonym": synonym_model, "paraphrase": paraphrase_model}
    for name, rate in attacks.items():
        attacked, unchanged = attack_texts(name, texts, rate, seed, keys, models.get(name))
        result[name] = [normalize(text) for text in attacked], unchanged
        if unchanged:
            logger.info("Attack %s left %s unchanged (nothing to edit)", name, counted(unchanged, "document"))
    return result


def load_attack_models(attacks: dict[str, float], synonym_model: str | None, paraphrase_model: str | None) -> None:
    """Load the models the attacks need now, so one that cannot be loaded stops the run before any scoring."""
    for name, model in (("synonym", synonym_model), ("paraphrase", paraphrase_model)):
        try:
            if name in attacks:
                load_attack_model(name, model)
        except ValueError as error:
            raise UserError(f"--{name}_model: {error}") from error


def _operating_points(labels: np.ndarray, probs: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    humans, machines = probs[labels == 0], probs[labels == 1]
    points: dict[str, Any] = {"auroc": float(roc_auc_score(labels, probs))}
    for key, threshold in thresholds.items():
        points[f"tpr_{key}"] = float((machines >= threshold).mean())
        points[f"human_fpr_{key}"] = float((humans >= threshold).mean())
    return points


def attack_metrics(
    labels: np.ndarray,
    clean_probs: np.ndarray,
    attacked_probs: dict[str, np.ndarray],
    attacks: dict[str, float],
    unchanged: dict[str, int],
    run_threshold: float,
) -> dict[str, Any]:
    """metrics.json's `attacks`: clean and per attack, AUROC and at each threshold (5% and 1% FPR on the clean
    human documents, and the run's) the TPR and the human FPR; per attack also its gap to clean."""
    labels, clean_probs = np.asarray(labels, dtype=np.int64), np.asarray(clean_probs, dtype=np.float64)
    if not 0 < labels.sum() < len(labels):
        raise UserError("evaluation under attack needs human and machine documents")
    thresholds = {f"at_fpr_{round(f * 100)}": threshold_at_fpr(labels, clean_probs, f) for f in TPR_FPRS}
    thresholds["at_run_threshold"] = run_threshold
    clean = _operating_points(labels, clean_probs, thresholds)
    by_attack = {}
    for name, probs in attacked_probs.items():
        points = _operating_points(labels, np.asarray(probs, dtype=np.float64), thresholds)
        gaps = {f"gap_{key}": points[key] - clean[key] for key in ("auroc", "tpr_at_fpr_5", "tpr_at_fpr_1")}
        by_attack[name] = {"rate": attacks[name], "unchanged": unchanged[name], **points, **gaps}
    counts = {"n_human": int((labels == 0).sum()), "n_machine": int(labels.sum())}
    set_on = "the clean human documents (RAID's rule); at_run_threshold: the run's own threshold"
    return counts | {"thresholds": thresholds, "thresholds_set_on": set_on, "clean": clean, "by_attack": by_attack}


ATTACK_COLUMNS = (  # (key in attack_metrics' parts, table header)
    ("rate", "rate"), ("unchanged", "unchanged"), ("auroc", "AUROC"), ("tpr_at_fpr_5", "TPR@5%"),
    ("gap_tpr_at_fpr_5", "gap"), ("tpr_at_fpr_1", "TPR@1%"), ("gap_tpr_at_fpr_1", "gap"),
    ("human_fpr_at_fpr_5", "human FPR@5%"), ("tpr_at_run_threshold", "TPR (run thr.)"),
    ("human_fpr_at_run_threshold", "human FPR (run thr.)"),
)  # fmt: skip


def attack_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Table rows: clean first, then each attack (columns ATTACK_COLUMNS after the name)."""
    rows = [["clean", *(result["clean"].get(key) for key, _ in ATTACK_COLUMNS)]]
    rows += [[name, *(part.get(key) for key, _ in ATTACK_COLUMNS)] for name, part in result["by_attack"].items()]
    return rows


def write_attack_chart(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """attacks.png: TPR at 5% FPR, clean and under each attack, one bar per model."""
    names = ["clean", *next(iter(results.values()))["by_attack"]]
    figure = Figure(figsize=(max(6.0, 0.7 * len(names) * max(1, len(results))), 4))
    axes = figure.subplots()
    width = 0.8 / len(results)
    for i, (model, result) in enumerate(results.items()):
        values = [result["clean"]["tpr_at_fpr_5"], *(result["by_attack"][n]["tpr_at_fpr_5"] for n in names[1:])]
        axes.bar(np.arange(len(names)) + i * width, values, width, label=model)
    axes.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=35, ha="right")
    axes.set(ylim=(0, 1), ylabel="TPR at 5% FPR (clean human threshold)", title="Machine documents caught under attack")
    if len(results) > 1:
        axes.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, path)
