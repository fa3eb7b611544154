"""What a run tells its user: data_report.json, splits.jsonl and the other audit files, the terminal summaries,
report.md with its plots, and the model card. Every table, on the terminal or in Markdown, is one formatter's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from data_loaders import LABEL_NAMES, Corpus, Document
from m4_training.evaluation import BASELINE_COLUMN
from m4_training.files import save_figure, write_text
from m4_training.splits import Split, group_overlap

METRIC_COLUMNS = (
    ("n", "n"),
    ("accuracy", "accuracy"),
    ("f1_macro", "F1 (macro)"),
    ("fpr_human", "FPR (human)"),
    ("auroc", "AUROC"),
)


def cell(value: Any) -> str:
    """How every table writes a value: counts as they are, rates with 3 decimals, a missing value as '-'."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


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


def _label_counts(documents: Iterable[Document]) -> dict[str, int]:
    counts = Counter(LABEL_NAMES[doc.label] for doc in documents)
    return {"human": counts["human"], "machine": counts["machine"]}


def _counts_by(documents: list[Document], attribute: str) -> dict[str, dict[str, int]]:
    """Human and machine documents per value of the attribute (sorted), counted in one pass."""
    counts = Counter((getattr(doc, attribute), doc.label) for doc in documents)
    return {
        value: {name: counts[value, label] for label, name in LABEL_NAMES.items()}
        for value in sorted({value for value, _ in counts})
    }


def build_data_report(
    corpus: Corpus,
    split: Split,
    chunk_counts: dict[str, dict[str, int]],
    class_weights: dict[str, float] | None,
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
        "documents": {side: _label_counts(docs) for side, docs in sides.items()},
        "chunks": chunk_counts,
        "documents_by_domain": {side: _counts_by(docs, "domain") for side, docs in sides.items()},
        "documents_by_generator": {side: _counts_by(docs, "generator") for side, docs in sides.items()},
        "groups": {side: len({doc.group_id for doc in docs}) for side, docs in sides.items()},
        "group_overlap": group_overlap(split),
        "class_weights": class_weights,
        "generators_by_domain": corpus.generators_by_domain,
    }


def split_rows(split: Split, token_counts: dict[int, tuple[int, int]]) -> Iterable[dict[str, Any]]:
    for side, documents in (("train", split.train), ("val", split.val)):
        for doc in documents:
            n_tokens, n_chunks = token_counts[doc.doc_id]
            yield {
                "doc_id": doc.doc_id,
                "split": side,
                "label": doc.label,
                "domain": doc.domain,
                "generator": doc.generator,
                "group_id": doc.group_id,
                "n_tokens": n_tokens,
                "n_chunks": n_chunks,
                "sources": doc.sources,
            }


def dropped_rows(corpus: Corpus, split: Split) -> Iterable[dict[str, Any]]:
    """The documents that are on neither side, each with its reason and sources (for audits)."""
    dropped = [("conflicting_labels", doc) for doc in corpus.conflicting_documents] + split.dropped_documents
    for reason, doc in dropped:
        yield {
            "doc_id": doc.doc_id,
            "reason": reason,
            "label": doc.label,
            "domain": doc.domain,
            "generator": doc.generator,
            "group_id": doc.group_id,
            "sources": doc.sources,
        }


def prediction_rows(predictions: pd.DataFrame, threshold: float) -> Iterable[dict[str, Any]]:
    for row in predictions.itertuples(index=False):
        yield {
            "doc_id": int(row.doc_id),
            "label": int(row.label),
            "prob_machine": float(row.prob_machine),
            "pred": int(row.prob_machine >= threshold),
            "domain": row.domain,
            "generator": row.generator,
            "n_chunks": int(row.n_chunks),
        }


def format_data_summary(report: dict[str, Any]) -> str:
    """A plain-text table of what the run will train and validate on."""
    lines = [
        f"Split flow: {report['split_flow']}   documents loaded: {report['documents_loaded']}   "
        f"duplicates merged: {report['duplicates_removed']}   group overlap: {report['group_overlap']}"
    ]
    if report["rows_skipped"]:
        lines.append("Skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(report["rows_skipped"].items())))
    if report["documents_dropped_by_split"]:
        dropped = sorted(report["documents_dropped_by_split"].items())
        lines.append("Dropped by split: " + ", ".join(f"{k}={v}" for k, v in dropped))

    def row(name: str, train: dict[str, int], val: dict[str, int]) -> list[Any]:
        total = sum(train.values()) + sum(val.values())
        share = 100 * (train.get("machine", 0) + val.get("machine", 0)) / total if total else 0.0
        counts = [train.get("human", 0), train.get("machine", 0), val.get("human", 0), val.get("machine", 0)]
        return [name, *counts, f"{share:.1f}%"]

    rows = [
        row("documents", report["documents"]["train"], report["documents"]["val"]),
        row("chunks", report["chunks"]["train"], report["chunks"]["val"]),
    ]
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


def format_metrics_summary(metrics: dict[str, Any]) -> str:
    """Overall and per-domain/per-generator document metrics as a small table."""
    document = metrics["document"]
    entries = [("all", document)]
    entries += [(f"domain {k}", v) for k, v in document["by_domain"].items()]
    entries += [(f"generator {k}", v) for k, v in document["by_generator"].items()]
    rows = [[name, m["n"], m["accuracy"], m["f1_macro"], m["auroc"], m["fpr_human"]] for name, m in entries]
    return format_table(["documents", "n", "acc", "F1", "AUROC", "FPR"], rows)


# ----------------------------------------------------------------------------------------------- report.md


def _metric_cells(metrics: dict[str, Any]) -> list[Any]:
    return [metrics.get(key) for key, _ in METRIC_COLUMNS]


def _models(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any], float]]:
    """(name, document metrics, threshold) for each model and operating point, the chosen threshold first."""
    models = [("transformer", metrics["document"], metrics["threshold"]["value"])]
    models.append(("transformer", metrics["document_at_0.5"], 0.5))
    if "baseline" in metrics:
        baseline = metrics["baseline"]
        models.append((baseline["name"], baseline["document"], baseline["threshold"]["value"]))
        models.append((baseline["name"], baseline["document_at_0.5"], 0.5))
    return models


def _breakdown(metrics: dict[str, Any], key: str, title: str) -> str:
    header = [title, *(name for _, name in METRIC_COLUMNS)]
    has_baseline = "baseline" in metrics
    if has_baseline:
        header += [f"{metrics['baseline']['name']} F1", f"{metrics['baseline']['name']} AUROC"]
    rows = []
    for value, part in metrics["document"][key].items():
        row = [value, *_metric_cells(part)]
        if has_baseline:
            other = metrics["baseline"]["document"][key].get(value, {})
            row += [other.get("f1_macro"), other.get("auroc")]
        rows.append(row)
    return format_table(header, rows, markdown=True)


def format_report(metrics: dict[str, Any], title: str) -> str:
    threshold = metrics["threshold"]
    metric_names = [name for _, name in METRIC_COLUMNS]
    lines = [
        f"# {title}",
        "",
        f"Decision threshold **{threshold['value']:.4f}** (`prob_machine >= threshold` means machine), chosen on "
        f"{threshold['chosen_on']} for a false-positive rate on human documents of at most "
        f"{threshold['target_fpr']:g} in every domain. A threshold chosen on the documents it is scored on is "
        "optimistic: expect a somewhat higher FPR on new human writing.",
        "",
        "## All documents",
        "",
        format_table(
            ["model", "threshold", *metric_names],
            [[name, f"{t:.4f}", *_metric_cells(m)] for name, m, t in _models(metrics)],
            markdown=True,
        ),
    ]
    if "by_corpus" in metrics["document"]:
        rows = [
            [corpus, name, f"{t:.4f}", *_metric_cells(part)]
            for corpus in metrics["document"]["by_corpus"]
            for name, m, t in _models(metrics)
            if (part := m["by_corpus"].get(corpus)) is not None
        ]
        lines += [
            "",
            "## By source corpus",
            "",
            "M4 documents only (`m4`) and posts from the Reddit file.",
            "",
            format_table(["corpus", "model", "threshold", *metric_names], rows, markdown=True),
        ]
    lines += ["", "## By domain (at the decision threshold)", "", _breakdown(metrics, "by_domain", "domain")]
    lines += [
        "",
        "## By generator (at the decision threshold)",
        "",
        "Each generator's machine documents together with all human documents; the `human` row has human "
        "documents only (its FPR is the overall one).",
        "",
        _breakdown(metrics, "by_generator", "generator"),
        "",
        "Plots: `confusion_matrix.png` (at the decision threshold), `roc.png`.",
    ]
    return "\n".join(lines) + "\n"


def write_plots(report_dir: Path, predictions: pd.DataFrame, metrics: dict[str, Any]) -> None:
    """confusion_matrix.png at the decision threshold and roc.png (with the baseline when present)."""
    threshold = metrics["threshold"]["value"]
    labels = predictions["label"].to_numpy()
    figure = Figure(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        labels,
        (predictions["prob_machine"].to_numpy() >= threshold).astype(int),
        labels=[0, 1],
        display_labels=[LABEL_NAMES[0], LABEL_NAMES[1]],
        colorbar=False,
        ax=figure.subplots(),
    )
    figure.axes[0].set_title(f"Documents at threshold {threshold:.3f}")
    save_figure(figure, report_dir / "confusion_matrix.png")

    figure = Figure(figsize=(5, 4.5))
    axes = figure.subplots()
    curves = [("transformer", "prob_machine")]
    if BASELINE_COLUMN in predictions.columns:
        curves.append((metrics["baseline"]["name"], BASELINE_COLUMN))
    if 0 < labels.sum() < len(labels):
        for name, column in curves:
            RocCurveDisplay.from_predictions(labels, predictions[column].to_numpy(), name=name, ax=axes)
        document = metrics["document"]
        axes.plot(document["fpr_human"], document["recall"], "o", color="black", label="decision threshold")
        axes.axvline(metrics["threshold"]["target_fpr"], linestyle=":", color="grey", label="target FPR")
        axes.legend(loc="lower right")
    else:
        axes.text(0.5, 0.5, "ROC needs human and machine documents", ha="center", va="center")
    axes.set_title("Document ROC")
    save_figure(figure, report_dir / "roc.png")


def write_report(report_dir: str | Path, metrics: dict[str, Any], predictions: pd.DataFrame, title: str) -> None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_plots(report_dir, predictions, metrics)
    write_text(report_dir / "report.md", format_report(metrics, title))


# ----------------------------------------------------------------------------------------------- model card


def format_model_card(metrics: dict[str, Any], data_report: dict[str, Any], settings: dict[str, Any]) -> str:
    """The model directory's README.md; `settings` is training_config.json's `arguments` (by group)."""
    model, data, split, chunking = settings["model"], settings["data"], settings["split"], settings["chunking"]
    threshold = metrics["threshold"]["value"]
    documents, chunks = data_report["documents"], data_report["chunks"]
    holdout = data_report["split_flow"] != "stratified"
    summary = format_report(metrics, "Validation metrics").split("## All documents", 1)[1].split("## By domain")[0]
    reddit_file = data["reddit_file"]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [machine-generated-text-detection, m4]",
        "---",
        "",
        "# Machine-generated text detector (human / machine)",
        "",
        f"Fine-tuned from `{model['model']}` to tell human-written (`human`, 0) from machine-generated "
        "(`machine`, 1) text. Documents longer than one window are split into overlapping windows of "
        f"{chunking['max_length']} tokens ({chunking['chunk_overlap']} shared) and the window probabilities are "
        "averaged.",
        "",
        "## Use",
        "",
        "```bash",
        "python predict.py --model_path THIS_DIR --input texts.jsonl --output predictions.jsonl",
        "```",
        "",
        "```python",
        "from transformers import pipeline",
        'detector = pipeline("text-classification", model="THIS_DIR")',
        'scores = detector(text, truncation=True, top_k=None)  # [{"label": "machine", "score": ...}, ...]',
        "```",
        "",
        f"The decision threshold is **{threshold:.4f}** on P(machine) (also `detection_threshold` in "
        "`config.json` and `threshold` in `training_config.json`); the pipeline's own label is the argmax (0.5). "
        "The pipeline sees only the first window and skips the training normalisation (whitespace"
        + (", digits mapped to 0" if data["normalize_digits"] else "")
        + "), so `predict.py` is the reference.",
        "",
        "## Training data",
        "",
        f"M4 domains {', '.join(data['train_domains'])}; generators {', '.join(data['train_generators'])}; "
        + (f"human posts from `{Path(str(reddit_file)).name}`. " if reddit_file else "no Reddit file. ")
        + f"Split: {'generator hold-out' if holdout else 'stratified'}, grouped (no group of a human text "
        "and the machine texts made from it is on both sides), "
        + (
            f"validation generator `{split['val_generator']}` never trained on."
            if holdout
            else f"{split['validation_split']:g} of the documents in validation."
        ),
        "",
        format_table(
            ["", "train human", "train machine", "val human", "val machine"],
            [
                [name, *(counts[side][label] for side in ("train", "val") for label in ("human", "machine"))]
                for name, counts in (("documents", documents), ("chunks", chunks))
            ],
            markdown=True,
        ),
        "",
        "## Validation metrics (documents)",
        summary.rstrip(),
        "",
        "Per domain and per generator: `report.md`; every number: `metrics.json`.",
        "",
        "## Intended use and limits",
        "",
        "- A screening aid for large collections of texts of the kind it was trained on; not proof that a "
        "particular person used a language model. Do not base decisions about individuals on it alone.",
        f"- The threshold keeps the false-positive rate on the validation human documents of every domain at or "
        f"below {metrics['threshold']['target_fpr']:g}; on other human writing (other domains, non-native writers) the "
        "rate can be much higher. Re-check it on your own human texts.",
        "- Short texts (a sentence or two) carry little signal; expect many more errors on them.",
        "- Generators not in the training data, newer models, paraphrased or edited machine text can evade it.",
        "- Trained on the domains listed above, mainly English: other languages and genres are out of scope.",
    ]
    return "\n".join(lines) + "\n"


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
    write_report(output_dir, metrics, predictions, "Validation report")
    write_text(output_dir / "README.md", format_model_card(metrics, data_report, settings))
