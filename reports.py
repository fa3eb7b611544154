"""What a run writes about its data and results: data_report.json, splits.jsonl, predictions, summaries.

JSON files are written atomically (temporary file, then rename) so a killed run never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from data_loaders import LABEL_NAMES, Corpus, Document, Split, group_overlap


def _atomic_write(path: str | Path, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp")
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    _atomic_write(path, lambda handle: json.dump(obj, handle, indent=2, ensure_ascii=False, sort_keys=False))


def write_text(path: str | Path, text: str) -> None:
    _atomic_write(path, lambda handle: handle.write(text))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    def write(handle: Any) -> None:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    _atomic_write(path, write)


def _label_counts(documents: Iterable[Document]) -> dict[str, int]:
    counts = Counter(LABEL_NAMES[doc.label] for doc in documents)
    return {"human": counts["human"], "machine": counts["machine"]}


def _counts_by(documents: list[Document], attribute: str) -> dict[str, dict[str, int]]:
    values = sorted({getattr(doc, attribute) for doc in documents})
    return {value: _label_counts(d for d in documents if getattr(d, attribute) == value) for value in values}


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
        lines.append(
            "Dropped by split: "
            + ", ".join(f"{k}={v}" for k, v in sorted(report["documents_dropped_by_split"].items()))
        )
    header = f"{'':28}{'train human':>12}{'train machine':>14}{'val human':>11}{'val machine':>12}{'machine %':>10}"
    lines.append(header)

    def row(name: str, train: dict[str, int], val: dict[str, int]) -> str:
        total = sum(train.values()) + sum(val.values())
        share = 100 * (train.get("machine", 0) + val.get("machine", 0)) / total if total else 0.0
        return (
            f"{name[:27]:28}{train.get('human', 0):>12}{train.get('machine', 0):>14}"
            f"{val.get('human', 0):>11}{val.get('machine', 0):>12}{share:>9.1f}%"
        )

    lines.append(row("documents", report["documents"]["train"], report["documents"]["val"]))
    lines.append(row("chunks", report["chunks"]["train"], report["chunks"]["val"]))
    for title, key in (("domain", "documents_by_domain"), ("generator", "documents_by_generator")):
        names = sorted(set(report[key]["train"]) | set(report[key]["val"]))
        for name in names:
            lines.append(row(f"  {title} {name}", report[key]["train"].get(name, {}), report[key]["val"].get(name, {})))
    weights = report["class_weights"]
    lines.append(
        "Class weights: "
        + (
            f"human={weights['human']:.4f} machine={weights['machine']:.4f}"
            if weights
            else "off (--use_class_weights to enable)"
        )
    )
    return "\n".join(lines)


def format_metrics_summary(metrics: dict[str, Any]) -> str:
    """Overall and per-domain/per-generator document metrics as a small table."""

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "-"

    lines = [f"{'documents':28}{'n':>6}{'acc':>8}{'F1':>8}{'AUROC':>8}{'FPR':>8}"]
    document = metrics["document"]
    entries = [("all", document)]
    entries += [(f"domain {k}", v) for k, v in document["by_domain"].items()]
    entries += [(f"generator {k}", v) for k, v in document["by_generator"].items()]
    for name, m in entries:
        lines.append(
            f"{name[:27]:28}{m['n']:>6}{cell(m['accuracy']):>8}{cell(m['f1_macro']):>8}"
            f"{cell(m['auroc']):>8}{cell(m['fpr_human']):>8}"
        )
    return "\n".join(lines)
