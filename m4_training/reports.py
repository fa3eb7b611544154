"""What a run tells its user: data_report.json, splits.jsonl and the other audit files, the terminal summaries,
report.md with its plots, and the model card. Every table, on the terminal or in Markdown, is one formatter's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from data_loaders import HUMAN_GENERATOR, LABEL_NAMES, Corpus, Document
from m4_training import robustness
from m4_training.augmentation import AttackedCopy
from m4_training.evaluation import BASELINE_COLUMN, DEFAULT_THRESHOLD_SOURCE, THRESHOLD_CHOSEN_HERE, THRESHOLD_GIVEN
from m4_training.files import save_figure, write_text
from m4_training.splits import Split, group_overlap

FLOW_NAMES = {"generator_holdout": "generator hold-out", "domain_holdout": "domain hold-out"}  # others as named
# Columns of the terminal summaries (format_metrics_summary, format_test_summary), after the row name.
SUMMARY_COLUMNS = ("n", "acc", "F1", "recall", "FPR", "AUROC", "TPR@5%", "TPR@1%")
GENERATOR_ROWS_NOTE = (
    "Each `generator X + all human` row holds that generator's machine documents and every human document."
)
METRIC_COLUMNS = (
    ("n", "n"),
    ("accuracy", "accuracy"),
    ("f1_macro", "F1 (macro)"),
    ("fpr_human", "FPR (human)"),
    ("auroc", "AUROC"),
    ("tpr_at_fpr_5", "TPR @5% FPR"),
    ("tpr_at_fpr_1", "TPR @1% FPR"),
)
METRIC_NAMES = [name for _, name in METRIC_COLUMNS]
# The document breakdowns (metrics key `by_X`) in table order with their notes in report.md: RAID's decoding and
# attack only where the input has them; a generator's or decoding's row holds its machine documents and every human one.
BREAKDOWN_NOTES = {
    "domain": "",
    "generator": "Each generator's machine documents together with all human documents; the `human` row has human "
    "documents only (its FPR is the overall one).",
    "decoding": "Each decoding strategy's machine documents together with all human documents, as by generator.",
    "attack": "The human and machine documents of each attack (`none`: unattacked).",
}
MACHINE_BREAKDOWNS = ("generator", "decoding")


def cell(value: Any) -> str:
    """How every table writes a value: counts as they are, rates with 3 decimals, a missing value as '-'."""
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]], markdown: bool = False) -> str:
    """A table as Markdown, or as aligned plain text (first column left, the others right)."""
    rows = [[cell(value) for value in row] for row in rows]
    header = [str(name) for name in header]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            text.ljust(width) if i == 0 else text.rjust(width) for i, (text, width) in enumerate(zip(row, widths))
        )
        for row in [header, *rows]
    )


# ----------------------------------------------------------------------------------------------- data


def _counts_by(documents: list[Document], attribute: str) -> dict[str, dict[str, int]]:
    """Human and machine documents per value of the attribute (sorted), counted in one pass."""
    counts = Counter((getattr(doc, attribute), doc.label) for doc in documents)
    return {
        value: {name: counts[value, label] for label, name in LABEL_NAMES.items()}
        for value in sorted({value for value, _ in counts})
    }


def build_data_report(
    corpus: Corpus, split: Split, chunk_counts: dict[str, dict[str, int]], class_weights: dict[str, float] | None
) -> dict[str, Any]:
    """The counts a user asks about, gathered from where the work happened."""
    sides = {"train": split.train, "val": split.val}
    return {
        "split_flow": split.flow,
        "files": [report.as_dict() for report in corpus.files],
        "files_ignored": corpus.ignored_files,
        "rows_skipped": dict(sum((report.skipped for report in corpus.files), Counter())),
        "duplicates_removed": corpus.duplicates_removed,
        "conflicting_label_documents": corpus.conflicting_label_documents,
        "documents_loaded": len(corpus.documents),
        "documents_dropped_by_split": dict(split.dropped),
        "documents": {
            side: {name: sum(doc.label == label for doc in docs) for label, name in LABEL_NAMES.items()}
            for side, docs in sides.items()
        },
        "chunks": chunk_counts,
        "documents_by_domain": {side: _counts_by(docs, "domain") for side, docs in sides.items()},
        "documents_by_generator": {side: _counts_by(docs, "generator") for side, docs in sides.items()},
        "groups": {side: len({doc.group_id for doc in docs}) for side, docs in sides.items()},
        "group_overlap": group_overlap(split),
        "class_weights": class_weights,
        "generators_by_domain": corpus.generators_by_domain,
        **({"sampling": split.sampling} if split.sampling else {}),  # only with --max_train/val_samples
        **({"augmentation": split.augmentation} if split.augmentation else {}),  # only with --augment_attacks
    }


def _audit_row(doc: Document, where: dict[str, Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A line of splits.jsonl or dropped_documents.jsonl: the document's id, where it went, its metadata."""
    metadata = {"label": doc.label, "domain": doc.domain, "generator": doc.generator, "group_id": doc.group_id}
    if isinstance(doc, AttackedCopy):  # its sources are its source document's
        metadata |= {"augmented_from": doc.augmented_from, "attack": doc.attack}
    return {"doc_id": doc.doc_id, **where, **metadata, **(counts or {}), "sources": doc.sources}


def split_rows(split: Split, token_counts: dict[int, tuple[int, int]]) -> Iterable[dict[str, Any]]:
    for side, documents in (("train", split.train), ("val", split.val)):
        for doc in documents:
            n_tokens, n_chunks = token_counts[doc.doc_id]
            yield _audit_row(doc, {"split": side}, {"n_tokens": n_tokens, "n_chunks": n_chunks})


def dropped_rows(corpus: Corpus, split: Split) -> Iterable[dict[str, Any]]:
    """The documents that are on neither side, each with its reason and sources (for audits)."""
    dropped = [("conflicting_labels", doc) for doc in corpus.conflicting_documents] + split.dropped_documents
    return (_audit_row(doc, {"reason": reason}) for reason, doc in dropped)


def format_data_summary(report: dict[str, Any]) -> str:
    """A plain-text table of what the run will train and validate on."""
    lines = [
        f"Split flow: {report['split_flow']}   documents loaded: {report['documents_loaded']}   "
        f"duplicates merged: {report['duplicates_removed']}   group overlap: {report['group_overlap']}"
    ]
    for title, key in (("Skipped", "rows_skipped"), ("Dropped by split", "documents_dropped_by_split")):
        if report[key]:
            lines.append(f"{title}: " + ", ".join(f"{k}={v}" for k, v in sorted(report[key].items())))
    if augmented := report.get("augmentation"):
        lines.append(
            f"Augmentation (rate {augmented['rate']:g}): training documents {augmented['train_documents_before']} -> "
            f"{augmented['train_documents_after']}; "
            + "; ".join(
                f"{name} {augmented['copies'][name]} copies, {augmented['unchanged'][name]} unchanged"
                + (f", {augmented['duplicates'][name]} duplicates" if augmented["duplicates"][name] else "")
                for name in augmented["attacks"]
            )
        )

    def row(name: str, train: dict[str, int], val: dict[str, int]) -> list[Any]:
        counts = [side.get(label, 0) for side in (train, val) for label in ("human", "machine")]
        return [name, *counts, f"{100 * (counts[1] + counts[3]) / (sum(counts) or 1):.1f}%"]

    rows = [row(name, report[name]["train"], report[name]["val"]) for name in ("documents", "chunks")]
    for title, key in (("domain", "documents_by_domain"), ("generator", "documents_by_generator")):
        for name in sorted(set(report[key]["train"]) | set(report[key]["val"])):
            rows.append(row(f"  {title} {name}", report[key]["train"].get(name, {}), report[key]["val"].get(name, {})))
    header = ["", "train human", "train machine", "val human", "val machine", "machine %"]
    lines.append(format_table(header, rows))
    weights = report["class_weights"]
    lines.append(
        "Class weights: "
        + (f"human={weights['human']:.4f} machine={weights['machine']:.4f}" if weights else "off (--use_class_weights)")
    )
    return "\n".join(lines)


def format_metrics_summary(metrics: dict[str, Any], title: str = "Documents") -> str:
    """Document metrics at the decision threshold, overall, per domain and per generator, with the baseline's
    F1 and AUROC beside the transformer's (each model at its own threshold for the same FPR target)."""
    document, threshold, baseline = metrics["document"], metrics["threshold"], metrics.get("baseline")
    rows = [["all", *_summary_cells(document), *_baseline_cells(metrics)]]
    for key, column in _breakdowns(document):
        rows += [
            [_group_row(column, k), *_summary_cells(v), *_baseline_cells(metrics, key, k)]
            for k, v in document[key].items()
        ]
    lines = [
        f"{title} at the decision threshold {threshold['value']:.4f} (P(machine) >= threshold means "
        f"machine; {_threshold_origin(threshold)}):",
        format_table(["documents", *SUMMARY_COLUMNS, *_baseline_header(metrics)], rows),
        GENERATOR_ROWS_NOTE,
    ]
    if baseline:
        lines.append(
            f"{baseline['name']}: the TF-IDF baseline fitted on the same training documents, at its own threshold "
            f"{baseline['threshold']['value']:.4f} for the same FPR target."
        )
    return "\n".join(lines)


def format_attack_summary(attacks: dict[str, Any], markdown: bool = False) -> str:
    """The documents clean and under each attack (metrics.json `attacks`) as one table, with how to read it."""
    thresholds = attacks["thresholds"]
    return "\n\n".join(
        [
            f"{attacks['n_human']} human and {attacks['n_machine']} machine documents, each scored clean and after "
            "each attack (seeded per document). TPR@5% and TPR@1%: machine documents caught at the thresholds "
            f"({thresholds['at_fpr_5']:.4f}, {thresholds['at_fpr_1']:.4f}) that flag 5% and 1% of the CLEAN human "
            "documents (RAID's rule); gap: against clean; human FPR@5%: attacked human documents flagged at the "
            f"first; run thr.: at the run's own threshold {thresholds['at_run_threshold']:.4f}. unchanged: "
            "documents the attack found nothing to edit in.",
            format_table(["attack", *(name for _, name in robustness.ATTACK_COLUMNS)], robustness.attack_rows(attacks),
                         markdown),
        ]
    )  # fmt: skip


def _attack_lines(metrics: dict[str, Any], name: str | None = None) -> list[str]:
    if "attacks" not in metrics:
        return []
    heading = "## Under attack (RAID's attacks)" + (f": {name}" if name else "")
    return [heading, format_attack_summary(metrics["attacks"], markdown=True), "Plot: `attacks.png`."]


def _breakdowns(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"by_{column}", column) for column in BREAKDOWN_NOTES if f"by_{column}" in document]


def _group_row(column: str, value: str) -> str:
    """A summary row's name; a generator's (decoding's) row holds its machine documents and every human one."""
    suffix = (" (human only)" if value == HUMAN_GENERATOR else " + all human") if column in MACHINE_BREAKDOWNS else ""
    return f"{column} {value}{suffix}"


def _summary_cells(part: dict[str, Any]) -> list[Any]:
    keys = ("n", "accuracy", "f1_macro", "recall", "fpr_human", "auroc", "tpr_at_fpr_5", "tpr_at_fpr_1")
    return [part.get(key) for key in keys]  # a run from before TPR@FPR was reported: '-' there


def _baseline_header(metrics: dict[str, Any]) -> list[str]:
    return [f"{metrics['baseline']['name']} {name}" for name in ("F1", "AUROC")] if "baseline" in metrics else []


def _baseline_cells(metrics: dict[str, Any], key: str | None = None, value: str | None = None) -> list[Any]:
    """The baseline's F1 and AUROC on the documents of a row (all of them, or those of a breakdown's value)."""
    if "baseline" not in metrics:
        return []
    document = metrics["baseline"]["document"]
    part = document if key is None else document[key].get(value, {})
    return [part.get("f1_macro"), part.get("auroc")]


def _threshold_origin(threshold: dict[str, Any]) -> str:
    """Where a threshold came from, in words, from metrics["threshold"]."""
    chosen_on = threshold["chosen_on"]
    if chosen_on == THRESHOLD_GIVEN:
        return "given with --threshold"
    if chosen_on == DEFAULT_THRESHOLD_SOURCE:
        return "the default 0.5 of a model without training_config.json, for no FPR target"
    return f"chosen on {chosen_on} for a human FPR of at most {threshold['target_fpr']:g} in every domain"


def format_test_data_summary(test_sets: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of the test sets: documents read, overlap removed, what is left to score."""
    rows = []
    for name, summary in test_sets.items():
        removed, n = summary["test_overlap_removed_by_split"], summary["documents"]
        rows.append(
            [name, summary["documents_read"], removed["train"], removed["validation"], n["human"], n["machine"]]
        )
    header = ["test set", "read", "removed: in train", "removed: in val", "human", "machine"]
    return format_table(header, rows)


def format_test_summary(metrics: dict[str, Any]) -> str:
    """Each test set's document metrics at the validation thresholds: the transformer and the baseline overall,
    then the transformer per domain and generator, in the columns of `format_metrics_summary`."""
    rows = []
    for name, result in metrics["test"].items():
        if "document" not in result:
            rows.append([f"{name}: nothing left after overlap removal", 0, *[None] * (len(SUMMARY_COLUMNS) - 1)])
            continue
        entries = [(f"{name} ({model})", document) for model, document, _ in _models(result)[::2]]
        for key, column in _breakdowns(result["document"]):
            entries += [(f"  {_group_row(column, k)}", v) for k, v in result["document"][key].items()]
        rows += [[label, *_summary_cells(m)] for label, m in entries]
    models = _with_baseline({"transformer": metrics}, metrics)
    thresholds = ", ".join(f"{name} {result['threshold']['value']:.4f}" for name, result in models)
    return "\n".join(
        [
            f"Test sets (validation threshold; chose nothing): each model at its threshold chosen on this run's "
            f"validation documents ({thresholds}):",
            format_table(["test documents", *SUMMARY_COLUMNS], rows),
            GENERATOR_ROWS_NOTE,
        ]
    )


# ----------------------------------------------------------------------------------------------- report.md


def _metric_cells(metrics: dict[str, Any]) -> list[Any]:
    return [metrics.get(key) for key, _ in METRIC_COLUMNS]


def _with_baseline(models: dict[str, Any], results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, evaluation) of each model, then of the baseline evaluated beside them (where there is one)."""
    baseline = results.get("baseline")
    return [*models.items(), *([(baseline["name"], baseline)] if baseline else [])]


def _models(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any], float]]:
    """(name, document metrics, threshold) for each model and operating point, the chosen threshold first."""
    return [
        (name, result[key], threshold)
        for name, result in _with_baseline({"transformer": metrics}, metrics)
        for key, threshold in (("document", result["threshold"]["value"]), ("document_at_0.5", 0.5))
    ]


def _models_table(metrics: dict[str, Any]) -> str:
    rows = [[name, f"{t:.4f}", *_metric_cells(m)] for name, m, t in _models(metrics)]
    return format_table(["model", "threshold", *METRIC_NAMES], rows, markdown=True)


def _breakdown(metrics: dict[str, Any], key: str, title: str) -> str:
    rows = [
        [value, *_metric_cells(part), *_baseline_cells(metrics, key, value)]
        for value, part in metrics["document"][key].items()
    ]
    return format_table([title, *METRIC_NAMES, *_baseline_header(metrics)], rows, markdown=True)


def _document_tables(metrics: dict[str, Any]) -> list[str]:
    """Each model's document metrics at each operating point, then (with a Reddit file) by source corpus."""
    if "by_corpus" not in metrics["document"]:
        return [_models_table(metrics)]
    rows = [
        [corpus, name, f"{t:.4f}", *_metric_cells(part)]
        for corpus in metrics["document"]["by_corpus"]
        for name, m, t in _models(metrics)
        if (part := m["by_corpus"].get(corpus)) is not None
    ]
    return [
        _models_table(metrics),
        "## By source corpus",
        "M4 documents only (`m4`) and posts from the Reddit file.",
        format_table(["corpus", "model", "threshold", *METRIC_NAMES], rows, markdown=True),
    ]


def markdown(paragraphs: Iterable[str]) -> str:
    """A Markdown document of these paragraphs (headings, tables, lists), a blank line between two."""
    return "\n\n".join(paragraphs) + "\n"


def _score_warning_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """report.md's section on scores that look broken (`score_warnings`), per model name ('' for one model)."""
    items = [
        f"- {name + ': ' if name else ''}{warning}"
        for name, r in results.items()
        for warning in r.get("score_warnings", [])
    ]
    warning = "The scores look broken; check the detector before trusting any number below."
    return ["## Score warnings", warning, "\n".join(items)] if items else []


def _threshold_sentence(threshold: dict[str, Any]) -> str:
    """The rest of report.md's threshold sentence, true to where the threshold came from."""
    target = f"for a false-positive rate on human documents of at most {threshold['target_fpr']:g} in every domain"
    if threshold["chosen_on"] == THRESHOLD_GIVEN:
        return ", given with --threshold."
    if threshold["chosen_on"] == DEFAULT_THRESHOLD_SOURCE:
        return (
            ": the default for a model without training_config.json, chosen on no documents and for no "
            "false-positive target; compare models by AUROC, or pass --threshold."
        )
    if threshold["chosen_on"] == THRESHOLD_CHOSEN_HERE:
        return (
            f", chosen on these documents {target}. A threshold chosen on the documents it is scored on is "
            "optimistic: expect a somewhat higher FPR on new human writing."
        )
    return (
        f", chosen on {threshold['chosen_on']} {target}, and applied here unchanged: the rates below are measured "
        "on these documents, not fitted to them."
    )


def _selection_lines(metrics: dict[str, Any]) -> list[str]:
    """What each set of documents was used for (train.py's reports; predict.py's have no `selection`)."""
    if not (selection := metrics.get("selection")):
        return []
    return [
        "## What chose what",
        f"- Validation documents chose the decision threshold; checkpoint: {selection['checkpoint']}. The validation "
        f"numbers below are therefore {selection['validation_metrics']}.\n"
        f"- Test sets: {selection['test_sets']}"
        + (" (their numbers are the unbiased ones)." if "test" in metrics else "."),
    ]


def _test_set_lines(metrics: dict[str, Any]) -> list[str]:
    """One section per --test_data set: its counts, the models at the validation thresholds, the breakdowns."""
    if "test" not in metrics:
        return []
    lines = [
        "## Test sets (not used for any choice)",
        "Scored once after training at the thresholds chosen on validation (the transformer's and the baseline's); "
        "documents whose text is also a training or validation document are removed first and counted.",
    ]
    for name, result in metrics["test"].items():
        removed = result["test_overlap_removed_by_split"]
        lines += [
            f"### Test set `{name}`",
            f"From `{result['source']}`: {result['documents_read']} documents read, "
            f"{result['test_overlap_removed']} removed as overlap ({removed['train']} also in training, "
            f"{removed['validation']} also in validation), {result['documents']['human']} human and "
            f"{result['documents']['machine']} machine documents scored.",
        ]
        if "document" not in result:
            continue
        lines += [_models_table(result), *(_breakdown(result, *by) for by in _breakdowns(result["document"]))]
        if "attacks" in result:
            lines += [f"#### Test set `{name}` under attack", format_attack_summary(result["attacks"], markdown=True)]
    return lines


def write_plots(report_dir: Path, predictions: pd.DataFrame, metrics: dict[str, Any]) -> None:
    """confusion_matrix.png at the decision threshold and roc.png (with the baseline when present)."""
    threshold = metrics["threshold"]["value"]
    labels = predictions["label"].to_numpy()
    figure, preds = Figure(figsize=(4.5, 4)), (predictions["prob_machine"].to_numpy() >= threshold).astype(int)
    ConfusionMatrixDisplay.from_predictions(
        labels, preds, labels=[0, 1], display_labels=list(LABEL_NAMES.values()), colorbar=False, ax=figure.subplots()
    ).ax_.set_title(f"Documents at threshold {threshold:.3f}")
    save_figure(figure, report_dir / "confusion_matrix.png")

    curves = {"transformer": predictions["prob_machine"].to_numpy()}
    if BASELINE_COLUMN in predictions.columns:
        curves[metrics["baseline"]["name"]] = predictions[BASELINE_COLUMN].to_numpy()
    point = (metrics["document"]["fpr_human"], metrics["document"]["recall"], metrics["threshold"]["target_fpr"])
    write_roc(report_dir / "roc.png", labels, curves, point)


def write_roc(path: Path, labels: np.ndarray, curves: dict[str, np.ndarray], point: tuple | None = None) -> None:
    """A ROC curve per model on the same documents, on a linear and on a log FPR axis (thresholds are chosen in
    the 1-5% FPR region, which the linear axis squeezes into its left edge); `point` (FPR, recall, target FPR)
    marks the decision threshold's point and the FPR it was chosen for."""
    figure = Figure(figsize=(10, 4.5))
    for axes, log_scale in zip(figure.subplots(1, 2), (False, True)):
        if 0 < labels.sum() < len(labels):
            # A model with NaN scores has no curve (its report says so: score warnings).
            ranked = {name: probs for name, probs in curves.items() if not np.isnan(probs).any()}
            for i, (name, probs) in enumerate(ranked.items()):
                chance = i == 0 and not log_scale
                RocCurveDisplay.from_predictions(labels, probs, name=name, ax=axes, plot_chance_level=chance)
            if point:
                fpr, recall, target_fpr = point
                axes.plot(fpr, recall, "o", color="black", label="decision threshold")
                axes.axvline(target_fpr, linestyle=":", color="grey", label="target FPR")
            axes.legend(loc="lower right", fontsize="small")
        else:
            axes.text(0.5, 0.5, "ROC needs human and machine documents", ha="center", va="center")
        if log_scale:
            axes.set(xscale="log", xlim=(1e-3, 1), aspect="auto")
        axes.set_xlabel("FPR: human documents called machine" + (" (log)" if log_scale else ""))
        axes.set_ylabel("TPR: machine documents caught")
        axes.set_title("Document ROC" + (", low-FPR region" if log_scale else ""))
    save_figure(figure, path)


def write_report(report_dir: str | Path, metrics: dict[str, Any], predictions: pd.DataFrame, title: str) -> None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_plots(report_dir, predictions, metrics)
    if "attacks" in metrics:
        robustness.write_attack_chart(report_dir / "attacks.png", {"transformer": metrics["attacks"]})
    write_text(report_dir / "report.md", format_report(metrics, title))


def format_report(metrics: dict[str, Any], title: str) -> str:
    threshold = metrics["threshold"]
    breakdowns = []
    for key, column in _breakdowns(metrics["document"]):
        note = [BREAKDOWN_NOTES[column]] if BREAKDOWN_NOTES[column] else []
        breakdowns += [f"## By {column} (at the decision threshold)", *note, _breakdown(metrics, key, column)]
    return markdown(
        [
            f"# {title}",
            f"Decision threshold **{threshold['value']:.4f}** (`prob_machine >= threshold` means machine)"
            + _threshold_sentence(threshold),
            *_score_warning_lines({"": metrics}),
            *_selection_lines(metrics),
            "## All documents",
            *_document_tables(metrics),
            *breakdowns,
            "Plots: `confusion_matrix.png` (at the decision threshold), `roc.png`.",
            *_attack_lines(metrics),
            *_test_set_lines(metrics),
        ]
    )


# ----------------------------------------------------------------------------------------------- comparison


def format_comparison_summary(comparison: dict[str, Any]) -> str:
    """A plain-text table: one row per model (and the baseline) on the same documents, each at its threshold."""
    entries = _with_baseline(comparison["models"], comparison)
    rows = [
        [name, f"{result['threshold']['value']:.4f}", *_summary_cells(result["document"])] for name, result in entries
    ]
    origins = [f"{name}: {_threshold_origin(result['threshold'])}" for name, result in entries]
    return "\n".join(
        [
            "Documents at each model's decision threshold (P(machine) >= threshold means machine):",
            format_table(["model", "threshold", *SUMMARY_COLUMNS], rows),
            "Thresholds: " + "; ".join(origins) + ".",
        ]
    )


def format_comparison_report(comparison: dict[str, Any], title: str) -> str:
    entries = _with_baseline(comparison["models"], comparison)
    rows = [
        [name, f"{result['threshold']['value']:.4f}", result["threshold"]["chosen_on"]]
        + [f"{window['max_length']} / {window['chunk_overlap']}" if (window := result.get("window")) else "-"]
        + _metric_cells(result["document"])
        for name, result in entries
    ]
    paragraphs = [
        f"# {title}",
        "Every model scored the same documents, each with its own settings: a train.py model with its "
        "training_config.json (normalisation, window, threshold chosen on its validation documents), any other "
        "model with its texts as written, windows of its positions and threshold 0.5. The thresholds differ in "
        "where they come from, so accuracy, F1 and FPR compare operating points; AUROC compares the models.",
        format_table(["model", "threshold", "threshold chosen on", "window / overlap", *METRIC_NAMES], rows, True),
        *_score_warning_lines(comparison["models"]),
    ]
    for key, heading in _breakdowns(entries[0][1]["document"]):
        metrics_of = [result["document"][key] for _, result in entries]
        header = [heading, *(f"{name} {metric}" for name, _ in entries for metric in ("F1", "AUROC"))]
        table_rows = [
            [value, *(by_value.get(value, {}).get(m) for by_value in metrics_of for m in ("f1_macro", "auroc"))]
            for value in sorted(set().union(*metrics_of))
        ]
        paragraphs += [f"## By {heading} (at each model's threshold)", format_table(header, table_rows, True)]
    for name, result in entries:
        paragraphs += _attack_lines(result, name)
    return markdown([*paragraphs, "Plot: `roc.png` (a curve per model)."])


def write_comparison_report(
    report_dir: str | Path,
    comparison: dict[str, Any],
    labels: np.ndarray,
    probabilities: dict[str, np.ndarray],
    title: str,
) -> None:
    """report.md with a row per model and roc.png with a curve per model, all on the same documents."""
    write_roc(Path(report_dir) / "roc.png", labels, probabilities)
    write_text(Path(report_dir) / "report.md", format_comparison_report(comparison, title))


# ----------------------------------------------------------------------------------------------- model card


# (metrics.json key, model-index metric type, name on the card) of the document metrics the card's YAML carries.
CARD_METRICS = (
    ("accuracy", "accuracy", "accuracy"),
    ("f1_macro", "f1", "F1 (macro)"),
    ("fpr_human", "false_positive_rate", "FPR (human)"),
    ("recall", "recall", "recall (machine)"),
    ("auroc", "roc_auc", "AUROC"),
)


def model_limits(target_fpr: float) -> list[str]:
    """The model's intended use and limits, one sentence each: the card's last section and the app's panel."""
    return [
        "A screening aid for large collections of texts of the kind it was trained on; not proof that a particular "
        "person used a language model. Do not base decisions about individuals on it alone.",
        f"The threshold keeps the false-positive rate on the validation human documents of every domain at or below "
        f"{target_fpr:g}; on other human writing (other domains, non-native writers) the rate can be much higher. "
        "Re-check it on your own human texts.",
        "Short texts (a sentence or two) carry little signal; expect many more errors on them.",
        "Generators not in the training data, newer models, paraphrased or edited machine text can evade it.",
        "Trained on the domains listed above, mainly English: other languages and genres are out of scope.",
    ]


def training_data_lines(data_summary: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """What the model was trained and validated on, as Markdown: the card's "Training data" section and the app's
    panel. `data_summary` is data_report.json or training_config.json's `data_summary` (the same counts)."""
    data, split, flow = settings["data"], settings["split"], data_summary["split_flow"]
    reddit_file = data["reddit_file"]
    # What was read (a requested name without a file is not training data); a run before it was recorded: asked.
    read = data_summary.get("generators_by_domain")
    domains = sorted(read) if read is not None else data["train_domains"]
    generators = sorted({g for names in read.values() for g in names}) if read is not None else data["train_generators"]
    rows = [
        [name, *(data_summary[name][side][label] for side in ("train", "val") for label in ("human", "machine"))]
        for name in ("documents", "chunks")
    ]
    return [
        f"M4 domains {', '.join(domains)}; generators {', '.join(generators)}; "
        + (f"human posts from `{Path(str(reddit_file)).name}`. " if reddit_file else "no Reddit file. ")
        + f"Split: {FLOW_NAMES.get(flow, flow)}, grouped (no group of a human text "
        "and the machine texts made from it is on both sides), "
        + {
            "generator_holdout": f"validation generator `{split['val_generator']}` never trained on.",
            "domain_holdout": f"validation domain `{split.get('val_domain')}` never trained on.",
        }.get(flow, f"{split['validation_split']:g} of the documents in validation.")
        + (
            f" Training documents include attacked copies ({', '.join(data['augment_attacks'])}, "
            f"rate {data['augment_rate']:g}), in their source's group."
            if data.get("augment_attacks")  # absent in runs from before augmentation
            else ""
        ),
        format_table(["", "train human", "train machine", "val human", "val machine"], rows, markdown=True),
    ]


def build_model_card(metrics: dict[str, Any], data_report: dict[str, Any], settings: dict[str, Any]) -> ModelCard:
    """The model directory's README.md; `settings` is training_config.json's `arguments` (by group)."""
    model, chunking = settings["model"]["model"], settings["chunking"]
    threshold, flow = metrics["threshold"]["value"], data_report["split_flow"]
    # The model-index entries: the transformer's document metrics at its threshold, on validation and each test set.
    sets = [("validation", "m4", f"M4 validation ({FLOW_NAMES.get(flow, flow)})", metrics)]
    sets += [("test", name, f"test set {name}", result) for name, result in metrics.get("test", {}).items()]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["machine-generated-text-detection", "m4"],
        base_model=None if Path(model).exists() else model,  # a local directory means nothing on the Hub
        model_name=Path(settings["training"]["output_dir"]).name,
        eval_results=[
            EvalResult(
                task_type="text-classification",
                task_name="Machine-generated text detection",
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=value,
                metric_config=f"documents, threshold {result['threshold']['value']:.4f}",
            )
            for split, dataset_type, dataset_name, result in sets
            if "document" in result
            for key, metric_type, metric_name in CARD_METRICS
            if (value := result["document"].get(key)) is not None
        ],
    )
    paragraphs = [
        "# Machine-generated text detector (human / machine)",
        f"Fine-tuned from `{model}` to tell human-written (`human`, 0) from machine-generated "
        "(`machine`, 1) text. Documents longer than one window are split into overlapping windows of "
        f"{chunking['max_length']} tokens ({chunking['chunk_overlap']} shared) and the window probabilities are "
        "averaged.",
        "## Use",
        "```bash\npython predict.py --model_path THIS_DIR --input texts.jsonl --output predictions.jsonl\n```",
        "```python\n"
        "from transformers import pipeline\n"
        'detector = pipeline("text-classification", model="THIS_DIR")\n'
        'scores = detector(text, truncation=True, top_k=None)  # [{"label": "machine", "score": ...}, ...]\n'
        "```",
        f"The decision threshold is **{threshold:.4f}** on P(machine) (also `detection_threshold` in "
        "`config.json` and `threshold` in `training_config.json`); the pipeline's own label is the argmax (0.5). "
        "The pipeline sees only the first window and skips the training normalisation ("
        + ("Unicode canonicalised, " if settings["data"].get("text_normalization") else "")
        + "whitespace"
        + (", digits mapped to 0" if settings["data"]["normalize_digits"] else "")
        + "), so `predict.py` is the reference.",
        "## Training data",
        *training_data_lines(data_report, settings),
        "## Validation metrics (documents)",
        *_document_tables(metrics),
        *_card_test_lines(metrics),
        "Per domain and per generator: `report.md`; every number: `metrics.json` (the YAML header holds the "
        "transformer's at its threshold). The validation documents chose the threshold"
        + (" and the checkpoint" if settings["training"].get("load_best_model_at_end") else "")
        + ", so their numbers are optimistic"
        + ("; the test sets chose nothing." if "test" in metrics else "."),
        "## Intended use and limits",
        "\n".join(f"- {limit}" for limit in model_limits(metrics["threshold"]["target_fpr"])),
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + markdown(paragraphs))


def _card_test_lines(metrics: dict[str, Any]) -> list[str]:
    if "test" not in metrics:
        return []
    rows = [
        [name, model, f"{t:.4f}", result["test_overlap_removed"], *_metric_cells(m)]
        for name, result in metrics["test"].items()
        if "document" in result
        for model, m, t in _models(result)[::2]  # at the validation thresholds
    ]
    header = ["test set", "model", "threshold", "overlap removed", *METRIC_NAMES]
    return ["## Test metrics (documents, held out)", format_table(header, rows, markdown=True)]


def write_training_outputs(
    output_dir: str | Path,
    model_config: Any,
    metrics: dict[str, Any],
    predictions: pd.DataFrame,
    data_report: dict[str, Any],
    settings: dict[str, Any],
) -> None:
    """After training: threshold into config.json, report.md with plots, and the model card README.md."""
    output_dir = Path(output_dir)
    model_config.detection_threshold = metrics["threshold"]["value"]
    model_config.detection_target_fpr = metrics["threshold"]["target_fpr"]
    model_config.save_pretrained(output_dir)
    write_report(
        output_dir, metrics, predictions, "Validation and test report" if "test" in metrics else "Validation report"
    )
    write_text(output_dir / "README.md", str(build_model_card(metrics, data_report, settings)))
