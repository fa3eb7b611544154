"""The run's final numbers for the trackers of `--report_to` (TensorBoard, W&B, ...), logged through the Trainer so
each tracker's own callback writes them next to the chunk-level numbers of training. Names follow the Trainer's
convention (`eval_...` shows as `eval/...`): `eval/threshold`, `eval/document/by_domain/arxiv/auroc`,
`eval/baseline/document/f1_macro`, `test/NAME/document/f1_macro`, `test/NAME/overlap_removed`,
`eval_attacks/homoglyph/tpr_at_fpr_5`, ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from transformers import Trainer

# The metrics of one group of documents sent to the trackers (the counts stay in metrics.json).
TRACKED_METRICS = ("accuracy", "f1_macro", "precision", "recall", "auroc", "fpr_human", "tpr_at_fpr_5", "tpr_at_fpr_1")
# --test_attacks: per attack (and clean), `eval_attacks/homoglyph/tpr_at_fpr_5`, ...
ATTACK_METRICS = ("auroc", "tpr_at_fpr_5", "tpr_at_fpr_1", "human_fpr_at_fpr_5", "tpr_at_run_threshold")


def _document_scalars(prefix: str, document: dict[str, Any]) -> Iterator[tuple[str, float]]:
    parts = {prefix: document}
    for key in ("by_domain", "by_generator", "by_corpus"):
        parts |= {f"{prefix}/{key}/{value}": part for value, part in document.get(key, {}).items()}
    for path, part in parts.items():
        yield from ((f"{path}/{name}", float(part[name])) for name in TRACKED_METRICS if part.get(name) is not None)


def _evaluation_scalars(prefix: str, metrics: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """The numbers of one `evaluate_predictions` result, each name starting with `prefix`."""
    yield f"{prefix}threshold", float(metrics["threshold"]["value"])
    yield from _document_scalars(f"{prefix}document", metrics["document"])
    yield from _document_scalars(f"{prefix}document_at_0.5", metrics["document_at_0.5"])
    if "baseline" in metrics:
        yield f"{prefix}baseline/threshold", float(metrics["baseline"]["threshold"]["value"])
        yield from _document_scalars(f"{prefix}baseline/document", metrics["baseline"]["document"])


def _attack_scalars(prefix: str, attacks: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for name, part in {"clean": attacks["clean"], **attacks["by_attack"]}.items():
        yield from ((f"{prefix}{name}/{key}", float(part[key])) for key in ATTACK_METRICS)


def tracker_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    scalars = dict(_evaluation_scalars("eval_", metrics))
    if "attacks" in metrics:
        scalars.update(_attack_scalars("eval_attacks/", metrics["attacks"]))
    for name, result in metrics.get("test", {}).items():
        scalars[f"test_{name}/overlap_removed"] = float(result["test_overlap_removed"])
        if "document" in result:
            scalars.update(_evaluation_scalars(f"test_{name}/", result))
        if "attacks" in result:
            scalars.update(_attack_scalars(f"test_{name}/attacks/", result["attacks"]))
    return scalars


def log_final_metrics(trainer: Trainer, metrics: dict[str, Any]) -> None:
    """Send the final document-level numbers to every tracker of --report_to (nothing without one)."""
    if trainer.args.report_to:
        trainer.log(tracker_scalars(metrics))
