"""Document-level evaluation outputs: metrics at the chosen threshold and at 0.5 (with the baseline side by
side), report.md, confusion_matrix.png, roc.png, the threshold in the model config and the model card.

Used at the end of training (validation documents) and by `predict.py --eval` (any labelled input).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

import metrics as metrics_lib
import reports
from baseline import BASELINE_NAME
from data_loaders import LABEL_NAMES, Corpus, Document

BASELINE_COLUMN = "baseline_prob_machine"
M4_CORPUS, REDDIT_CORPUS = "m4", "reddit_file"
TABLE_COLUMNS = (
    ("n", "n"), ("accuracy", "accuracy"), ("f1_macro", "F1 (macro)"), ("fpr_human", "FPR (human)"), ("auroc", "AUROC")
)


def documents_frame(documents: list[Document], corpus: Corpus) -> pd.DataFrame:
    """doc_id, label, domain, generator and corpus ("m4" or "reddit_file") of each document."""
    return pd.DataFrame(
        [
            (doc.doc_id, doc.label, doc.domain, doc.generator, M4_CORPUS if corpus.from_m4(doc) else REDDIT_CORPUS)
            for doc in documents
        ],
        columns=["doc_id", "label", "domain", "generator", "corpus"],
    )


def _scored(predictions: pd.DataFrame, column: str) -> pd.DataFrame:
    return predictions.drop(columns=["prob_machine"]).rename(columns={column: "prob_machine"})


def evaluate_predictions(
    predictions: pd.DataFrame, target_fpr: float, threshold: float | None = None
) -> dict[str, Any]:
    """Metrics of labelled document predictions (`prob_machine`, optional `baseline_prob_machine`).

    Without `threshold` the threshold is chosen on these documents for `target_fpr` (training); with it
    (prediction) the saved threshold is applied. The baseline's threshold is always chosen on these documents
    for the same target, so both models are compared at the same false-positive budget, and also at 0.5.
    """
    chosen_here = threshold is None
    if chosen_here:
        threshold = metrics_lib.choose_threshold(
            predictions["label"], predictions["prob_machine"], target_fpr, predictions["domain"]
        )
    result = {
        "threshold": {
            "value": threshold,
            "target_fpr": target_fpr,
            "chosen_on": "these documents" if chosen_here else "the training run's validation documents",
        },
        "document": metrics_lib.document_metrics(predictions, threshold),
        "document_at_0.5": metrics_lib.document_metrics(predictions, 0.5),
    }
    if BASELINE_COLUMN in predictions.columns:
        baseline = _scored(predictions, BASELINE_COLUMN)
        baseline_threshold = metrics_lib.choose_threshold(
            baseline["label"], baseline["prob_machine"], target_fpr, baseline["domain"]
        )
        result["baseline"] = {
            "name": BASELINE_NAME,
            "threshold": {"value": baseline_threshold, "target_fpr": target_fpr, "chosen_on": "these documents"},
            "document": metrics_lib.document_metrics(baseline, baseline_threshold),
            "document_at_0.5": metrics_lib.document_metrics(baseline, 0.5),
        }
    if M4_CORPUS in result["document"].get("by_corpus", {}):
        result["m4_f1_macro"] = _m4_f1_macro(result)
    return result


def _m4_f1_macro(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Macro-F1 on the M4 documents only, for each model at its decision threshold and at 0.5."""
    models = {"transformer": metrics}
    if "baseline" in metrics:
        models[metrics["baseline"]["name"]] = metrics["baseline"]
    return {
        f"{name}{suffix}": section[key]["by_corpus"].get(M4_CORPUS, {}).get("f1_macro")
        for name, section in models.items()
        for key, suffix in (("document", ""), ("document_at_0.5", "_at_0.5"))
    }


# ------------------------------------------------------------------------------------------------ report.md


def cell(value: Any) -> str:
    """How report.md writes a metric (tests parse it back)."""
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _metric_cells(metrics: dict[str, Any]) -> list[str]:
    return [cell(metrics.get(key)) for key, _ in TABLE_COLUMNS]


def _models(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any], float]]:
    """(name, document metrics, threshold) for each model and operating point, the chosen threshold first."""
    models = [("transformer", metrics["document"], metrics["threshold"]["value"])]
    models.append(("transformer", metrics["document_at_0.5"], 0.5))
    if "baseline" in metrics:
        baseline = metrics["baseline"]
        models.append((baseline["name"], baseline["document"], baseline["threshold"]["value"]))
        models.append((baseline["name"], baseline["document_at_0.5"], 0.5))
    return models


def _breakdown(metrics: dict[str, Any], key: str, title: str) -> list[str]:
    header = [title, *(name for _, name in TABLE_COLUMNS)]
    has_baseline = "baseline" in metrics
    if has_baseline:
        header += [f"{metrics['baseline']['name']} F1", f"{metrics['baseline']['name']} AUROC"]
    rows = []
    for value, part in metrics["document"][key].items():
        row = [value, *_metric_cells(part)]
        if has_baseline:
            other = metrics["baseline"]["document"][key].get(value, {})
            row += [cell(other.get("f1_macro")), cell(other.get("auroc"))]
        rows.append(row)
    return _table(header, rows)


def format_report(metrics: dict[str, Any], title: str) -> str:
    threshold = metrics["threshold"]
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
    ]
    header = ["model", "threshold", *(name for _, name in TABLE_COLUMNS)]
    lines += _table(header, [[name, f"{t:.4f}", *_metric_cells(m)] for name, m, t in _models(metrics)])
    if "by_corpus" in metrics["document"]:
        lines += ["", "## By source corpus", "", "M4 documents only (`m4`) and posts from the Reddit file.", ""]
        rows = [
            [corpus, name, f"{t:.4f}", *_metric_cells(part)]
            for corpus in metrics["document"]["by_corpus"]
            for name, m, t in _models(metrics)
            if (part := m["by_corpus"].get(corpus)) is not None
        ]
        lines += _table(["corpus", "model", "threshold", *(name for _, name in TABLE_COLUMNS)], rows)
    lines += ["", "## By domain (at the decision threshold)", "", *_breakdown(metrics, "by_domain", "domain")]
    lines += [
        "",
        "## By generator (at the decision threshold)",
        "",
        "Each generator's machine documents together with all human documents; the `human` row has human "
        "documents only (its FPR is the overall one).",
        "",
        *_breakdown(metrics, "by_generator", "generator"),
        "",
        "Plots: `confusion_matrix.png` (at the decision threshold), `roc.png`.",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ plots


def _save_figure(figure: Figure, path: Path) -> None:
    """Write the PNG next to its destination first, so an interrupted run leaves no partial image."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(handle)
    try:
        figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight")
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


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
    _save_figure(figure, report_dir / "confusion_matrix.png")

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
    _save_figure(figure, report_dir / "roc.png")


def write_report(report_dir: str | Path, metrics: dict[str, Any], predictions: pd.DataFrame, title: str) -> None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_plots(report_dir, predictions, metrics)
    reports.write_text(report_dir / "report.md", format_report(metrics, title))


# ------------------------------------------------------------------------------------------------ model card


def format_model_card(metrics: dict[str, Any], data_report: dict[str, Any], arguments: dict[str, Any]) -> str:
    threshold = metrics["threshold"]["value"]
    documents, chunks = data_report["documents"], data_report["chunks"]
    split = "stratified, grouped" if data_report["split_flow"] == "stratified" else "generator hold-out, grouped"
    summary = format_report(metrics, "Validation metrics").split("## All documents", 1)[1].split("## By domain")[0]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [machine-generated-text-detection, m4]",
        "---",
        "",
        "# Machine-generated text detector (human / machine)",
        "",
        f"Fine-tuned from `{arguments['model']}` to tell human-written (`human`, 0) from machine-generated "
        "(`machine`, 1) text. Documents longer than one window are split into overlapping windows of "
        f"{arguments['max_length']} tokens ({arguments['chunk_overlap']} shared) and the window probabilities are "
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
        + (", digits mapped to 0" if arguments.get("normalize_digits") else "")
        + "), so `predict.py` is the reference.",
        "",
        "## Training data",
        "",
        f"M4 domains {', '.join(arguments['train_domains'])}; generators {', '.join(arguments['train_generators'])}; "
        + (
            f"human posts from `{Path(str(reddit_file)).name}`. "
            if (reddit_file := arguments.get("reddit_file")) and str(reddit_file).lower() != "none"
            else "no Reddit file. "
        )
        + f"Split: {split} (no group of a human text "
        "and the machine texts made from it is on both sides), "
        + (
            f"validation generator `{arguments['val_generator']}` never trained on."
            if data_report["split_flow"] != "stratified"
            else f"{arguments['validation_split']:g} of the documents in validation."
        ),
        "",
        *_table(
            ["", "train human", "train machine", "val human", "val machine"],
            [
                [name, *(str(counts[side][label]) for side in ("train", "val") for label in ("human", "machine"))]
                for name, counts in (("documents", documents), ("chunks", chunks))
            ],
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
    arguments: dict[str, Any],
) -> None:
    """After training: threshold into config.json, report.md with plots, and the model card README.md."""
    output_dir = Path(output_dir)
    model_config.detection_threshold = metrics["threshold"]["value"]
    model_config.detection_target_fpr = metrics["threshold"]["target_fpr"]
    model_config.save_pretrained(output_dir)
    write_report(output_dir, metrics, predictions, "Validation report")
    reports.write_text(output_dir / "README.md", format_model_card(metrics, data_report, arguments))
