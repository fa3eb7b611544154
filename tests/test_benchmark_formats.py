"""Benchmark formats in and out (RAID's CSV and leaderboard JSON, SemEval-2024 Task 8 subtask A JSONL) and the
sanity warnings about a detector's scores."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import read_jsonl, write_jsonl

import data_loaders
import predict
from m4_training import heldout, reports
from m4_training.cli import UserError
from m4_training.evaluation import score_warnings

BY_KEYS = ("by_attack", "by_decoding", "by_generator", "by_domain")
RAID_HEADER = (
    "id",
    "adv_source_id",
    "source_id",
    "model",
    "decoding",
    "repetition_penalty",
    "attack",
    "domain",
    "title",
    "prompt",
    "generation",
)
# (id, model, decoding, repetition_penalty, attack, domain); human rows have no decoding, as in RAID.
RAID_ROWS = [
    ("h-1", "human", "", "", "none", "abstracts"),
    ("h-2", "human", "", "", "homoglyph", "news"),
    ("h-3", "human", "", "", "none", "news"),
    ("m-1", "gpt4", "greedy", "no", "none", "abstracts"),
    ("m-2", "gpt4", "sampling", "yes", "homoglyph", "news"),
    ("m-3", "mistral", "sampling", "no", "none", "news"),
    ("m-4", "mistral", "greedy", "no", "homoglyph", "abstracts"),
    ("m-5", "chatgpt", "sampling", "no", "whitespace", "abstracts"),
]
TEXTS = [
    "the river ecology study shows that the data look off, honestly",
    "moreover the city water system plays a crucial role in growth",
    "i went to the market and bought some apples for my grandmother",
    "in conclusion the results demonstrate a significant improvement overall",
    "furthermore it is important to note that the findings are robust",
    "the committee met on tuesday to discuss the budget for next year",
    "additionally, this approach offers several key advantages for users",
    "my dog ran off again this morning and i had to chase him down",
]


def write_raid_csv(path, rows=RAID_ROWS, columns=RAID_HEADER):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for (doc_id, model, decoding, penalty, attack, domain), text in zip(rows, TEXTS):
            values = {"id": doc_id, "adv_source_id": doc_id, "source_id": doc_id, "model": model}
            values |= {"decoding": decoding, "repetition_penalty": penalty, "attack": attack, "domain": domain}
            values |= {"title": "a title, with a comma", "prompt": "", "generation": text}
            writer.writerow([values[column] for column in columns])
    return path


def run(argv, capsys):
    code = predict.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def raid_csv(tmp_path):
    return write_raid_csv(tmp_path / "raid_train.csv")


def test_raid_csv_round_trip(raid_csv, tiny_model_dir, tmp_path, capsys, one_torch_thread):
    report_dir = tmp_path / "report"
    argv = ["--model_path", str(tiny_model_dir), "--input", str(raid_csv), "--eval", "--report_dir", str(report_dir)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    rows = read_jsonl(report_dir / "predictions.jsonl")
    assert [row["id"] for row in rows] == ["h-1", "h-2", "h-3", "m-1", "m-2", "m-3", "m-4", "m-5"]
    assert [row["label"] for row in rows] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert [row["generator"] for row in rows] == ["human"] * 3 + ["gpt4", "gpt4", "mistral", "mistral", "chatgpt"]
    assert rows[4]["attack"] == "homoglyph" and rows[4]["decoding"] == "sampling"
    assert rows[4]["repetition_penalty"] == "yes" and rows[4]["domain"] == "news"
    assert "decoding" not in rows[0]  # a human row has none

    document = json.loads((report_dir / "metrics.json").read_text())["document"]
    counts = {key: {v: (m["n_human"], m["n_machine"]) for v, m in document[key].items()} for key in BY_KEYS}
    assert counts["by_attack"] == {"homoglyph": (1, 2), "none": (2, 2), "whitespace": (0, 1)}
    assert counts["by_decoding"] == {"human": (3, 0), "greedy": (3, 2), "sampling": (3, 3)}
    assert counts["by_generator"] == {"human": (3, 0), "chatgpt": (3, 1), "gpt4": (3, 2), "mistral": (3, 2)}
    assert counts["by_domain"] == {"abstracts": (1, 3), "news": (2, 2)}
    report = (report_dir / "report.md").read_text()
    assert "## By decoding" in report and "## By attack" in report and "| whitespace |" in report
    assert "decoding sampling + all human" in err and "attack homoglyph" in err  # the terminal summary


def test_other_inputs_have_no_raid_breakdowns(tiny_model_dir, tmp_path, capsys, one_torch_thread):
    path = write_jsonl(tmp_path / "plain.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)])
    report_dir = tmp_path / "report"
    argv = ["--model_path", str(tiny_model_dir), "--input", str(path), "--eval", "--report_dir", str(report_dir)]
    assert run(argv, capsys)[0] == 0
    document = json.loads((report_dir / "metrics.json").read_text())["document"]
    assert set(document) & {"by_decoding", "by_attack"} == set()
    assert "## By attack" not in (report_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "columns, extra, missing",
    [
        ([c for c in RAID_HEADER if c != "id"], [], "id"),
        ([c for c in RAID_HEADER if c != "model"], ["--input_format", "raid", "--eval"], "model"),
        ([c for c in RAID_HEADER if c not in ("id", "generation")], ["--input_format", "raid"], "id, generation"),
    ],
)
def test_raid_csv_missing_column_is_one_line(columns, extra, missing, tmp_path, capsys, monkeypatch):
    path = write_raid_csv(tmp_path / "raid.csv", columns=columns)
    monkeypatch.setattr(predict, "score_documents", lambda *a, **k: pytest.fail("scored a broken input"))
    argv = ["--model_path", "m", "--input", str(path), "--report_dir", str(tmp_path / "report"), *extra]
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert f"error: {path}: RAID CSV without column {missing}" in err and "columns: " in err


def test_unlabelled_raid_csv_scores_without_eval_and_refuses_eval(tmp_path, capsys, monkeypatch):
    path = write_raid_csv(tmp_path / "raid_test.csv", columns=("id", "domain", "attack", "generation"))
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    monkeypatch.setattr(predict, "score_documents", stub_scores([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]))
    code, out, err = run(["--model_path", str(tmp_path), "--input", str(path)], capsys)  # RAID by its header
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [r[0] for r in RAID_ROWS] and all("label" not in r for r in rows)
    assert rows[1]["attack"] == "homoglyph"
    code, _, err = run(["--model_path", str(tmp_path), "--input", str(path), "--eval"], capsys)
    assert code == 2 and f"{path}: RAID CSV without column model (labels come from model" in err


def test_raid_submission_json(raid_csv, tiny_model_dir, tmp_path, capsys, one_torch_thread):
    submission, output = tmp_path / "submission.json", tmp_path / "predictions.jsonl"
    argv = ["--model_path", str(tiny_model_dir), "--input", str(raid_csv), "--raid_submission", str(submission)]
    code, out, err = run([*argv, "--output", str(output)], capsys)
    assert code == 0 and out == "", err
    entries = json.loads(submission.read_text())
    assert isinstance(entries, list) and all(set(entry) == {"id", "score"} for entry in entries)
    assert [entry["id"] for entry in entries] == [row[0] for row in RAID_ROWS]
    scores = {row["id"]: row["prob_machine"] for row in read_jsonl(output)}
    assert [entry["score"] for entry in entries] == [scores[entry["id"]] for entry in entries]
    assert not any(tmp_path.glob(".submission.json.*"))  # written through a temporary file, renamed into place


@pytest.mark.parametrize(
    "argv_end, message",
    [
        (["--raid_submission", "{input}"], "--raid_submission {input} is --input {input}"),
        (["--raid_submission", "{tmp}/x.json", "--output", "{tmp}/x.json"], "--output and --raid_submission"),
        (["--raid_submission", "{tmp}/s.json", "--model_path", "a", "b"], "give one --model_path (got 2)"),
        (["--raid_submission", "{tmp}/r/metrics.json", "--eval", "--report_dir", "{tmp}/r"], "writes in --report_dir"),
    ],
)
def test_raid_submission_bad_paths(argv_end, message, raid_csv, tmp_path, capsys):
    fill = {"input": str(raid_csv), "tmp": str(tmp_path)}
    argv = ["--model_path", "m", "--input", str(raid_csv), *[a.format(**fill) for a in argv_end]]
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and message.format(**fill) in err, err


def test_semeval_subtask_a_jsonl(tmp_path, capsys, monkeypatch):
    models = ["human", "chatGPT", "human", "cohere", "human", "davinci", "chatGPT", "human"]
    sources = ["wikihow", "wikihow", "arxiv", "arxiv", "reddit", "reddit", "wikihow", "arxiv"]
    rows = [
        {"text": text, "label": int(model != "human"), "model": model, "source": source, "id": 100 + i}
        for i, (text, model, source) in enumerate(zip(TEXTS, models, sources))
    ]
    path = write_jsonl(tmp_path / "subtaskA_dev_monolingual.jsonl", rows)
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    monkeypatch.setattr(predict, "score_documents", stub_scores([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.4]))
    report_dir = tmp_path / "report"
    code, _, err = run(["--model_path", "m", "--input", str(path), "--eval", "--report_dir", str(report_dir)], capsys)
    assert code == 0, err
    predictions = read_jsonl(report_dir / "predictions.jsonl")
    assert [(r["id"], r["label"], r["generator"], r["domain"]) for r in predictions] == [
        (100 + i, int(m != "human"), m, s) for i, (m, s) in enumerate(zip(models, sources))
    ]
    document = json.loads((report_dir / "metrics.json").read_text())["document"]
    assert {k: (v["n_human"], v["n_machine"]) for k, v in document["by_generator"].items()} == {
        "human": (4, 0),
        "chatGPT": (4, 2),
        "cohere": (4, 1),
        "davinci": (4, 1),
    }
    assert {k: v["n"] for k, v in document["by_domain"].items()} == {"arxiv": 3, "reddit": 2, "wikihow": 3}


# ----------------------------------------------------------------------------------------------- score sanity


class FakeDetector:
    """What predict.py needs of a detector whose scores a test sets (with `stub_scores`)."""

    normalization = data_loaders.TextNormalization(digits=False, unicode=True)
    domains = generators = None
    threshold, target_fpr, settings_from = 0.5, None, "defaults for a model without training_config.json"
    model = SimpleNamespace(config=SimpleNamespace(id2label={0: "human", 1: "machine"}))
    machine_index, max_length, chunk_overlap = 1, 64, 8


def stub_scores(probs):
    """predict.score_documents giving the documents these P(machine), in order."""

    def score(documents, *args, **kwargs):
        return documents.drop(columns=["text", "line"], errors="ignore").assign(
            prob_machine=np.asarray(probs, dtype=np.float64), n_chunks=1
        )

    return score


def test_score_warning_rules():
    labels = np.array([0, 1] * 50)
    assert score_warnings(np.linspace(0, 1, 100), labels) == []
    assert score_warnings(np.arange(100) % 10 / 10, None) == []  # 10 distinct values: enough
    assert score_warnings(np.arange(99) % 9 / 10, None) == []  # 9 values over 99 documents: too few to judge
    assert score_warnings(np.arange(100) % 9 / 10, None) == [
        "quantised scores: 9 distinct values over 100 documents; ties make AUROC and TPR@FPR coarse and thresholds jump"
    ]
    assert score_warnings(np.full(3, 0.25), None)[0].startswith("constant scores: every document scored 0.25;")
    assert score_warnings(np.array([0.5]), None) == []  # one document: nothing to compare
    assert score_warnings(np.array([0.9, 0.1, 0.8, 0.3]), np.array([0, 1, 0, 1]))[0].startswith("AUROC 0.000 < 0.5")
    assert score_warnings(np.array([0.9, 0.1, 0.8, 0.3]), np.array([1, 0, 1, 0])) == []


@pytest.mark.parametrize(
    "probs, warning",
    [
        ([0.1, np.nan, 0.2, 0.8, 0.9, 0.7], "1 document of 6 scored NaN: counted as human at every threshold"),
        ([0.7] * 6, "constant scores: every document scored 0.7;"),
        (
            [0.9, 0.8, 0.7, 0.1, 0.2, 0.3],
            "AUROC 0.000 < 0.5: the scores point the wrong way; the labels may be inverted",
        ),
        ([i % 2 / 2 for i in range(60)] + [0.5 + i % 2 / 2 for i in range(60)], "quantised scores: 3 distinct values"),
    ],
)
def test_score_warnings_in_log_metrics_and_report(probs, warning, tmp_path, capsys, monkeypatch, caplog):
    labels = [0] * (len(probs) // 2) + [1] * (len(probs) - len(probs) // 2)
    rows = [{"id": i, "text": f"text number {i}", "label": label} for i, label in enumerate(labels)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    monkeypatch.setattr(predict, "score_documents", stub_scores(probs))
    report_dir = tmp_path / "report"
    code, _, err = run(["--model_path", "m", "--input", str(path), "--eval", "--report_dir", str(report_dir)], capsys)
    assert code == 0, err
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and warning in r.getMessage()]
    assert len(logged) == 1 and logged[0].startswith("m: ")
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert [w for w in metrics["score_warnings"] if warning in w] and len(metrics["score_warnings"]) == 1
    assert "## Score warnings" in (report_dir / "report.md").read_text()
    assert warning in (report_dir / "report.md").read_text()
    if np.isnan(probs).any():
        assert metrics["document"]["auroc"] is None and metrics["document"]["n"] == 6
        prediction = read_jsonl(report_dir / "predictions.jsonl")[1]
        assert prediction["pred"] == 0 and "prob_machine" not in prediction


def test_nan_scores_give_null_in_the_raid_submission(raid_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    monkeypatch.setattr(predict, "score_documents", stub_scores([np.nan, *np.linspace(0.1, 0.9, 7)]))
    submission = tmp_path / "submission.json"
    argv = ["--model_path", "m", "--input", str(raid_csv), "--raid_submission", str(submission)]
    assert run(argv, capsys)[0] == 0
    entries = json.loads(submission.read_text())
    assert entries[0] == {"id": "h-1", "score": None} and entries[1] == {"id": "h-2", "score": pytest.approx(0.1)}


def test_sanity_is_clean_for_a_healthy_detector():
    frame = pd.DataFrame({"prob_machine": np.linspace(0, 1, 200), "label": pd.array([0] * 100 + [1] * 100)})
    assert predict.score_sanity("m", frame) == []


def test_raid_csv_as_a_test_set(raid_csv, tmp_path):
    """train.py --test_data reads a RAID CSV as predict.py does; its summary and report group by attack."""
    (test_set,) = heldout.read_test_sets([str(raid_csv)], None, None, data_loaders.TextNormalization(False, True))
    assert test_set.documents["label"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert test_set.documents["attack"].tolist() == [row[4] for row in RAID_ROWS]

    def score(texts):
        return pd.DataFrame({"prob_machine": np.linspace(0.1, 0.9, len(texts)), "n_chunks": 1})

    result, _ = heldout.evaluate_test_set(test_set, score, 0.5, 0.05)
    assert {k: v["n"] for k, v in result["document"]["by_attack"].items()} == {
        "homoglyph": 3,
        "none": 4,
        "whitespace": 1,
    }
    metrics = {"test": {"raid": result}, "threshold": {"value": 0.5}}
    assert "  attack whitespace " in reports.format_test_summary(metrics)
    assert "  decoding greedy + all human " in reports.format_test_summary(metrics)
    unlabelled = write_raid_csv(tmp_path / "test.csv", columns=[c for c in RAID_HEADER if c != "model"])
    with pytest.raises(UserError, match=r"^--test_data .*test.csv: RAID CSV without column model"):
        heldout.read_test_sets([str(unlabelled)], None, None, False)


def test_csv_with_a_text_column_and_no_model_stays_plain(tmp_path, capsys, monkeypatch):
    path = tmp_path / "notes.csv"
    path.write_text("id,text,generation\na,the written text,3\n", encoding="utf-8")
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    texts = []
    monkeypatch.setattr(predict, "score_documents", lambda d, *a, **k: texts.extend(d["text"]) or stub_scores([0.5])(d))
    code, _, err = run(["--model_path", "m", "--input", str(path)], capsys)
    assert code == 0 and texts == ["the written text"], err


def test_score_warnings_per_model_when_comparing(raid_csv, tmp_path, capsys, monkeypatch, caplog):
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    monkeypatch.setattr(predict, "score_documents", stub_scores([0.3] * 8))
    report_dir = tmp_path / "report"
    argv = ["--model_path", "a", "b", "--input", str(raid_csv), "--eval", "--report_dir", str(report_dir)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    models = json.loads((report_dir / "metrics.json").read_text())["models"]
    assert [models[name]["score_warnings"][0][:16] for name in ("a", "b")] == ["constant scores:"] * 2
    assert "- a: constant scores" in (report_dir / "report.md").read_text()
    assert "## By attack" in (report_dir / "report.md").read_text()
    assert sum("constant scores" in r.getMessage() for r in caplog.records) == 2


def test_nan_scores_are_not_scored_under_attack(tmp_path, capsys, monkeypatch, caplog):
    rows = [{"id": i, "text": f"the text number {i}", "label": i % 2} for i in range(6)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    monkeypatch.setattr(predict, "load_detector", lambda *a, **k: FakeDetector())
    monkeypatch.setattr(predict, "score_documents", stub_scores([0.1, np.nan, 0.2, 0.8, 0.3, 0.9]))
    report_dir = tmp_path / "report"
    argv = [
        "--model_path",
        "m",
        "--input",
        str(path),
        "--eval",
        "--report_dir",
        str(report_dir),
        "--attacks",
        "whitespace",
    ]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert "attacks" not in json.loads((report_dir / "metrics.json").read_text())
    assert any(r.getMessage() == "m: not scored under attack (NaN scores)" for r in caplog.records)
