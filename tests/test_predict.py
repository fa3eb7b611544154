"""predict.py: every input kind, chunk aggregation against a hand computation, HF pipeline, bad input."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import write_jsonl
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import predict
from data_loaders import TextNormalization, load_corpus, normalize_text

LONG_TEXT = " ".join(
    f"Furthermore the river ecology study number {i} shows that honestly i think the data look off." for i in range(40)
)
SHORT_TEXT = "moreover the city water system plays a crucial role in growth"


def run_predict(argv, capsys):
    code = predict.main(argv)
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, rows, captured.err


def training_settings(demo_run):
    return json.loads((demo_run / "training_config.json").read_text())


def hand_chunk_probs(model_dir, text, max_length, overlap, normalize_digits):
    """Window the normalised text independently of chunking.py and score each window alone."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    normalized = normalize_text(text, TextNormalization(normalize_digits, True))
    ids = tokenizer(normalized, add_special_tokens=False)["input_ids"]
    content = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    probs, start = [], 0
    while True:
        window = [tokenizer.cls_token_id, *ids[start : start + content], tokenizer.sep_token_id]  # BERT layout
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([window])).logits
        probs.append(torch.softmax(logits, -1)[0, 1].item())
        if start + content >= len(ids):
            return np.array(probs)
        start += content - overlap


def test_jsonl_ids_passthrough_and_threshold(demo_run, tmp_path, capsys):
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "doc-a", "text": SHORT_TEXT, "label": 1, "domain": "news", "extra": 5},
            "",
            {"text": LONG_TEXT, "generator": "gpt"},
        ],
    )
    code, rows, _ = run_predict(["--model_path", str(demo_run), "--input", str(path)], capsys)
    assert code == 0 and [r["id"] for r in rows] == ["doc-a", 3]  # line number where no id is given
    assert rows[0]["label"] == 1 and rows[0]["domain"] == "news" and "extra" not in rows[0]
    assert rows[1]["generator"] == "gpt" and "label" not in rows[1]
    threshold = training_settings(demo_run)["threshold"]
    for row in rows:
        assert row["pred"] == (1 if row["prob_machine"] >= threshold else 0)
    _, everything_machine, _ = run_predict(
        ["--model_path", str(demo_run), "--input", str(path), "--threshold", "0"], capsys
    )
    assert [r["pred"] for r in everything_machine] == [1, 1]


def test_every_input_kind_gives_the_same_probability(demo_run, tmp_path, capsys, monkeypatch):
    write_jsonl(tmp_path / "a.jsonl", [{"text": LONG_TEXT}])
    (tmp_path / "a.csv").write_text(f'id,text,label\nx1,"{LONG_TEXT}",machine\n', encoding="utf-8")
    (tmp_path / "essay.txt").write_text(LONG_TEXT + "\n", encoding="utf-8")
    results = {}
    for name in ("a.jsonl", "a.csv", "essay.txt"):
        code, rows, _ = run_predict(["--model_path", str(demo_run), "--input", str(tmp_path / name)], capsys)
        assert code == 0 and len(rows) == 1
        results[name] = rows[0]
    monkeypatch.setattr("sys.stdin", io.StringIO(LONG_TEXT))
    code, rows, _ = run_predict(["--model_path", str(demo_run), "--input", "-"], capsys)
    results["stdin"] = rows[0]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"id": 7, "text": LONG_TEXT}) + "\n"))
    code, rows, _ = run_predict(["--model_path", str(demo_run), "--input", "-"], capsys)
    results["stdin_jsonl"] = rows[0]
    assert results["a.csv"]["id"] == "x1" and results["a.csv"]["label"] == 1
    assert results["essay.txt"]["id"] == "essay" and results["stdin"]["id"] == "stdin"
    assert results["stdin_jsonl"]["id"] == 7
    probs = [r["prob_machine"] for r in results.values()]
    assert probs == pytest.approx([probs[0]] * len(probs), abs=1e-6)
    assert {r["n_chunks"] for r in results.values()} == {results["a.jsonl"]["n_chunks"]}
    assert results["a.jsonl"]["n_chunks"] > 1


def test_m4_file_and_m4_directory(demo_run, tmp_path, capsys):
    m4_dir = demo_run / "demo_inputs" / "m4"
    m4_file = m4_dir / "reddit_davinci.jsonl"
    code, rows, _ = run_predict(["--model_path", str(demo_run), "--input", str(m4_file)], capsys)
    n_rows = sum(1 for line in m4_file.open() if line.strip())
    assert code == 0 and len(rows) == 2 * n_rows
    assert rows[0]["id"] == "reddit-0/human" and rows[1]["id"] == "reddit-0/machine"
    assert (rows[0]["label"], rows[1]["label"]) == (0, 1)
    assert rows[1]["domain"] == "reddit" and rows[1]["generator"] == "davinci" and rows[0]["generator"] == "human"

    out = tmp_path / "dir_predictions.jsonl"
    argv = ["--model_path", str(demo_run), "--input", str(m4_dir), "--domains", "arxiv", "--output", str(out)]
    assert predict.main([*argv, "--generators", "chatGPT", "dolly"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    corpus = load_corpus(m4_dir, ["arxiv"], ["chatGPT", "dolly"], None, TextNormalization(True, True))
    assert sorted(r["id"] for r in written) == sorted(d.doc_id for d in corpus.documents)
    assert {r["generator"] for r in written} == {"human", "chatgpt", "dolly"}


@pytest.mark.parametrize("how", ["mean", "max"])
def test_aggregation_matches_hand_computation_with_mixed_batches(demo_run, tmp_path, capsys, how):
    settings = training_settings(demo_run)
    texts = [LONG_TEXT, SHORT_TEXT, LONG_TEXT[: len(LONG_TEXT) // 2] + " 123", SHORT_TEXT + " lol"]
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in texts])
    argv = ["--model_path", str(demo_run), "--input", str(path), "--aggregate", how, "--batch_size", "3"]
    code, rows, _ = run_predict(argv, capsys)
    assert code == 0
    for text, row in zip(texts, rows):
        chunk_probs = hand_chunk_probs(
            demo_run,
            text,
            settings["chunking"]["max_length"],
            settings["chunking"]["chunk_overlap"],
            settings["normalization"]["normalize_digits"],
        )
        assert row["n_chunks"] == len(chunk_probs)
        assert row["prob_machine"] == pytest.approx(getattr(chunk_probs, how)(), abs=1e-5)
    assert rows[0]["n_chunks"] >= 3 and rows[1]["n_chunks"] == 1


def test_training_normalisation_is_applied(demo_run, tmp_path, capsys):
    assert training_settings(demo_run)["normalization"]["normalize_digits"] is True
    path = write_jsonl(
        tmp_path / "n.jsonl",
        [{"text": "in 1999 the  rail\nnetworks grew 42%"}, {"text": "in 0000 the rail networks grew 00%"}],
    )
    _, rows, _ = run_predict(["--model_path", str(demo_run), "--input", str(path)], capsys)
    assert rows[0]["prob_machine"] == pytest.approx(rows[1]["prob_machine"], abs=1e-7)


def test_hf_pipeline_returns_human_machine_labels(demo_run, tmp_path, capsys):
    from transformers import AutoConfig, pipeline

    detector = pipeline("text-classification", model=str(demo_run), device="cpu")
    scores = {s["label"]: s["score"] for s in detector(SHORT_TEXT, top_k=None)}
    assert set(scores) == {"human", "machine"}
    assert detector(SHORT_TEXT)[0]["label"] == max(scores, key=scores.get)
    path = write_jsonl(tmp_path / "one.jsonl", [{"text": SHORT_TEXT}])
    _, rows, _ = run_predict(["--model_path", str(demo_run), "--input", str(path)], capsys)
    assert scores["machine"] == pytest.approx(rows[0]["prob_machine"], abs=1e-5)
    config = AutoConfig.from_pretrained(demo_run)
    assert config.detection_threshold == training_settings(demo_run)["threshold"]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_file", "rows.jsonl: not found"),
        ("empty_file", "empty input"),
        ("no_row_with_text", "no usable document in 2 rows (skipped: {'text_missing': 1, 'text_empty': 1})"),
        ("csv_without_text_column", "no text column (text, body, selftext) in the CSV header; columns: id, content"),
        ("model_without_classifier", "is not a sequence-classification model (architectures: BertModel)"),
        ("eval_without_labels", "--eval: INPUT: every document needs a label (0/1 or human/machine); none for ids [1]"),
    ],
)
def test_bad_input_one_line_error_and_nothing_written(demo_run, tmp_path, capsys, case, expected):
    model_path, input_path, extra = demo_run, tmp_path / "rows.jsonl", []
    if case == "empty_file":
        input_path.write_text("\n\n", encoding="utf-8")
    elif case == "no_row_with_text":
        write_jsonl(input_path, [{"id": 1, "content": "no text field"}, {"id": 2, "text": "  "}])
    elif case == "csv_without_text_column":
        input_path = tmp_path / "rows.csv"
        input_path.write_text("id,content\n1,hello\n", encoding="utf-8")
    elif case == "model_without_classifier":  # a base encoder: a classification head would be random
        model_path = tmp_path / "model"
        shutil.copytree(demo_run, model_path, ignore=shutil.ignore_patterns("checkpoint-*", "demo_inputs"))
        (model_path / "training_config.json").unlink()
        config = json.loads((model_path / "config.json").read_text())
        (model_path / "config.json").write_text(json.dumps(config | {"architectures": ["BertModel"]}))
        write_jsonl(input_path, [{"text": SHORT_TEXT}])
    elif case == "eval_without_labels":
        write_jsonl(input_path, [{"text": SHORT_TEXT}])
        extra = ["--eval", "--report_dir", str(tmp_path / "report")]
    output = tmp_path / "out" / "predictions.jsonl"
    argv = ["--model_path", str(model_path), "--input", str(input_path), "--output", str(output), *extra]
    assert predict.main(argv) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    expected = expected.replace("INPUT", str(input_path))
    assert len(errors) == 1 and expected in errors[0] and "Traceback" not in captured.err
    assert not output.exists() and not (tmp_path / "report").exists() and captured.out == ""


def test_rows_without_text_are_counted_skips_naming_the_line(demo_run, tmp_path, capsys, caplog):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": SHORT_TEXT}, {"id": 2, "content": "no text"}, "not json",
                                                 {"body": SHORT_TEXT}])  # fmt: skip
    code, rows, err = run_predict(["--model_path", str(demo_run), "--input", str(path)], capsys)
    assert code == 0 and [row["id"] for row in rows] == [1, 4]  # ids default to the line number
    assert rows[0]["prob_machine"] == pytest.approx(rows[1]["prob_machine"])  # `body` is a text field too
    logged = caplog.text
    assert f"{path}:2: skipped (text_missing)" in logged and f"{path}:3: skipped (malformed_json)" in logged
    assert "2 rows skipped" in logged
