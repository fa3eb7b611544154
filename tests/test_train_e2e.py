"""train.py end to end: the demo run's outputs, checked against each other and against the raw files."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import raw_text, read_jsonl
from transformers import AutoModelForSequenceClassification

import train
from data_loaders import TextNormalization, normalize_text
from m4_training import train_args
from m4_training.evaluation import classification_metrics
from m4_training.train_args import parse_train_args


def test_demo_writes_every_output(demo_run):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "training_config.json",
        "data_report.json",
        "splits.jsonl",
        "metrics.json",
        "eval_predictions.jsonl",
    ):
        assert (demo_run / name).is_file(), name
    model = AutoModelForSequenceClassification.from_pretrained(demo_run)
    assert model.config.id2label == {0: "human", 1: "machine"}
    config = json.loads((demo_run / "training_config.json").read_text())
    assert (
        config["arguments"]["split"]["val_generator"] == "flant5"
        and config["arguments"]["chunking"]["max_length"] == 128
    )
    assert config["normalization"] == {"whitespace": True, "normalize_digits": True, "text_normalization": True}
    assert set(config["versions"]) >= {"torch", "transformers", "datasets"}


def test_reports_agree_with_splits(demo_run):
    report = json.loads((demo_run / "data_report.json").read_text())
    splits = read_jsonl(demo_run / "splits.jsonl")
    assert report["group_overlap"] == 0
    assert {g for s in splits if s["split"] == "train" for g in [s["group_id"]]}.isdisjoint(
        {s["group_id"] for s in splits if s["split"] == "val"}
    )
    for side in ("train", "val"):
        docs = Counter(("human", "machine")[s["label"]] for s in splits if s["split"] == side)
        chunks = Counter()
        for s in splits:
            if s["split"] == side:
                chunks[("human", "machine")[s["label"]]] += s["n_chunks"]
        assert report["documents"][side] == dict(docs)
        assert report["chunks"][side] == dict(chunks)
    train_chunks = report["chunks"]["train"]
    n = sum(train_chunks.values())
    assert report["class_weights"] == pytest.approx(
        {"human": n / (2 * train_chunks["human"]), "machine": n / (2 * train_chunks["machine"])}
    )
    # hold-out flow: flant5 only in validation, and every drop is counted
    assert not any(s["generator"] == "flant5" for s in splits if s["split"] == "train")
    assert report["documents_dropped_by_split"]["val_generator_in_training_group"] > 0
    demo_files = [f for f in report["files"] if f["kind"] == "m4"]
    assert sum(f["skipped"].get("machine_text_empty", 0) for f in demo_files) == 1


def test_every_raw_text_is_in_a_split_dropped_or_skipped(demo_run):
    """The hold-out demo run accounts for each (file, line, field) of its input files exactly once."""
    report = json.loads((demo_run / "data_report.json").read_text())
    placed = Counter()
    for s in read_jsonl(demo_run / "splits.jsonl"):
        placed.update((src["file"], src["line"], src["field"]) for src in s["sources"])
    dropped = read_jsonl(demo_run / "dropped_documents.jsonl")
    assert Counter(d["reason"] for d in dropped) == report["documents_dropped_by_split"]
    for d in dropped:
        placed.update((src["file"], src["line"], src["field"]) for src in d["sources"])
    assert max(placed.values()) == 1
    for entry in report["files"]:
        fields = ("text",) if entry["kind"] == "reddit" else ("human_text", "text", "machine_text")
        skipped_lines = {line for lines in entry["skipped_lines"].values() for line in lines}
        for number, line in enumerate(open(entry["path"], encoding="utf-8"), start=1):
            row = json.loads(line)
            for field in fields:
                if field in row:
                    assert (entry["path"], number, field) in placed or number in skipped_lines, (entry["path"], number)
    assert sum(placed.values()) == sum(
        sum(f in json.loads(line) for f in ("human_text", "text", "machine_text"))
        for entry in report["files"]
        for line in open(entry["path"], encoding="utf-8")
    ) - sum(sum(entry["skipped"].values()) for entry in report["files"])


def test_no_text_on_both_sides_checked_from_raw_files(demo_run):
    splits = read_jsonl(demo_run / "splits.jsonl")
    as_read = TextNormalization(digits=False, unicode=True)
    texts = {
        side: {normalize_text(raw_text(src), as_read) for s in splits if s["split"] == side for src in s["sources"]}
        for side in ("train", "val")
    }
    assert texts["train"] and texts["val"]
    assert texts["train"].isdisjoint(texts["val"])


def test_document_metrics_match_predictions(demo_run):
    predictions = read_jsonl(demo_run / "eval_predictions.jsonl")
    splits = {s["doc_id"]: s for s in read_jsonl(demo_run / "splits.jsonl")}
    val_ids = {i for i, s in splits.items() if s["split"] == "val"}
    assert {p["id"] for p in predictions} == val_ids and len(predictions) == len(val_ids)
    threshold = json.loads((demo_run / "training_config.json").read_text())["threshold"]
    for p in predictions:
        assert p["label"] == splits[p["id"]]["label"] and p["n_chunks"] == splits[p["id"]]["n_chunks"]
        assert p["pred"] == int(p["prob_machine"] >= threshold)
    metrics = json.loads((demo_run / "metrics.json").read_text())
    labels = np.array([p["label"] for p in predictions])
    probs = np.array([p["prob_machine"] for p in predictions])
    expected = classification_metrics(labels, probs, threshold)
    document = metrics["document"]
    assert document["threshold"] == threshold
    for key in ("accuracy", "f1_macro", "auroc", "fpr_human", "n"):
        assert document[key] == pytest.approx(expected[key])
    assert set(document["by_domain"]) == {p["domain"] for p in predictions}
    assert metrics["chunk"]["n"] == sum(p["n_chunks"] for p in predictions)
    assert document["accuracy"] > 0.5  # the tiny model learns something from the demo sample


def test_dry_run_on_shared_sample_matches_independent_counts(shared_data, tmp_path):
    output_dir = tmp_path / "dry"
    argv = [
        "--dry_run",
        "--model",
        str(shared_data / "roberta-base-tokenizer"),
        "--data_dir",
        str(shared_data / "m4_sample"),
        "--reddit_file",
        str(shared_data / "reddit" / "reddit_wsb_training.jsonl"),
        "--train_domains",
        "arxiv",
        "wikipedia",
        "reddit",
        "wikihow",
        "--train_generators",
        "llama2",
        "--stratified_split",
        "--use_class_weights",
        "--output_dir",
        str(output_dir),
    ]
    assert train.main(argv) == 0
    assert not (output_dir / "config.json").exists()  # tokenizer only, no model
    report = json.loads((output_dir / "data_report.json").read_text())
    splits = read_jsonl(output_dir / "splits.jsonl")
    assert len(splits) == 2401 and report["group_overlap"] == 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(shared_data / "roberta-base-tokenizer")
    texts = [normalize_text(raw_text(s["sources"][0]), TextNormalization(True, True)) for s in splits]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    content, overlap = 510, 50
    for s, n_tokens in zip(splits, lengths):
        assert s["n_tokens"] == n_tokens
        assert s["n_chunks"] == 1 + max(0, math.ceil((n_tokens - content) / (content - overlap)))
    # every raw text occurrence is in a document's sources or counted as skipped
    sources = {(src["file"], src["line"], src["field"]) for s in splits for src in s["sources"]}
    for entry in report["files"]:
        n_texts = 0
        for line in open(entry["path"], encoding="utf-8"):
            row = json.loads(line)
            n_texts += sum(bool(row.get(k)) for k in ("human_text", "machine_text")) if entry["kind"] == "m4" else 1
        assert n_texts == sum(1 for f, _, _ in sources if f == entry["path"]) + sum(entry["skipped"].values())
    val_share = sum(s["split"] == "val" for s in splits) / len(splits)
    assert abs(val_share - 0.1) <= 0.03
    assert Counter(s["domain"] for s in splits if s["split"] == "val")["reddit_wsb"] > 100


def test_unloadable_model_and_missing_val_generator_exit_2(tmp_path, demo_inputs, capsys):
    data_dir, reddit_file, _ = demo_inputs
    common = ["--data_dir", str(data_dir), "--reddit_file", str(reddit_file), "--output_dir", str(tmp_path)]
    assert train.main(["--model", str(tmp_path / "no-such-model"), "--dry_run", *common]) == 2
    err = capsys.readouterr().err
    assert "could not load the tokenizer" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code = train.main(
        [
            "--model",
            str(demo_inputs[2]),
            "--dry_run",
            "--train_domains",
            "arxiv",
            "reddit",
            "--train_generators",
            "chatgpt",
            "davinci",
            "--val_generator",
            "cohere",
            *common,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    # Checked by name before any file is read (the split's own check, after loading, lists generators per domain).
    assert "--val_generator cohere matches no file; generators there: chatgpt davinci dolly flant5" in err


def test_demo_is_the_documented_default(monkeypatch):
    demo = parse_train_args(["--demo"])
    assert demo.training.output_dir == "demo_output" and demo.chunking.max_length == 128
    assert (demo.model.model, demo.data.data_dir, demo.data.reddit_file) == (None, None, None)  # generated inputs
    assert parse_train_args(["--demo", "--max_length", "64"]).chunking.max_length == 64
    defaults = parse_train_args([])
    assert (defaults.model.model, defaults.chunking.max_length, defaults.chunking.chunk_overlap) == (
        "roberta-base",
        512,
        50,
    )
    assert defaults.split.val_generator == "flant5" and defaults.model.attn_implementation is None
    assert defaults.data.train_generators == ["chatGPT", "davinci", "cohere", "dolly", "flant5"]
    assert Path(defaults.data.data_dir) == Path("M4_cleaned/data")
    aliases = parse_train_args(["--lr", "3e-5", "--epochs", "2", "--batch_size", "4", "--eval_batch_size", "8"])
    assert (aliases.training.learning_rate, aliases.training.num_train_epochs) == (3e-5, 2.0)
    assert (aliases.training.per_device_train_batch_size, aliases.training.per_device_eval_batch_size) == (4, 8)
    monkeypatch.setattr(train_args, "get_available_reporting_integrations", lambda: ["wandb"])  # installed or not
    assert parse_train_args(["--use_wandb"]).training.report_to == ["wandb"]
    assert parse_train_args(["--no_group_by_length"]).training.train_sampling_strategy == "random"


def test_demo_trains_the_model_the_user_names(tmp_path, tiny_model_dir, monkeypatch):
    """`--demo --model DIR` trains DIR on the generated sample (explicit flags win over the demo's defaults)."""
    loaded = []
    load_tokenizer = train.modeling.load_tokenizer
    monkeypatch.setattr(train.modeling, "load_tokenizer", lambda name: loaded.append(name) or load_tokenizer(name))
    named = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, named)
    assert train.main(["--demo", "--model", str(named), "--dry_run", "--output_dir", str(tmp_path / "out")]) == 0
    assert loaded == [str(named)]
    data_report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert all(str(tmp_path / "out" / "demo_inputs") in entry["path"] for entry in data_report["files"])
