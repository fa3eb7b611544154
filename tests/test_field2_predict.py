"""Second field test, predict.py: inputs read by their content, every model loaded before scoring, no inverted
train.py model, and a baseline never fitted on the documents it scores."""

from __future__ import annotations

import io
import json
import logging
import shutil

import pytest
from conftest import read_jsonl, write_jsonl

import data_loaders
import predict

TEXTS = [
    {"id": "h1", "text": "I went down to the river this morning and the fog had not lifted yet.", "label": 0},
    {"id": "m1", "text": "In conclusion, the river offers a multitude of benefits for the community.", "label": 1},
    {"id": "h2", "text": "my cat knocked the glass off the table again, third time this week lol", "label": 0},
]


def test_a_jsonl_file_without_a_known_suffix_is_read_line_by_line(demo_run, tmp_path, capsys):
    path = write_jsonl(tmp_path / "texts.data", TEXTS)
    assert (
        predict.main(["--input", str(path), "--model_path", str(demo_run), "--output", str(tmp_path / "p.jsonl")]) == 0
    )
    assert [row["id"] for row in read_jsonl(tmp_path / "p.jsonl")] == ["h1", "m1", "h2"]


def test_a_json_array_on_stdin_is_its_documents(demo_run, tmp_path, monkeypatch):
    stdin = json.dumps([*TEXTS, 7, "a string"]).encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    out = tmp_path / "p.jsonl"
    assert predict.main(["--input", "-", "--model_path", str(demo_run), "--output", str(out)]) == 0
    assert [row["id"] for row in read_jsonl(out)] == ["h1", "m1", "h2"]  # the two non-objects skipped


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"[Verse 1] the river runs", "txt"),  # a text that starts with a bracket
        (b"[ref] see above", "txt"),
        (b' \n[ {"text": "a"} ]', "json_array"),
        (b"[]", "json_array"),
        (b'{"text": "a"}', "jsonl"),
    ],
)
def test_stdin_format_by_how_it_starts(head, kind):
    assert data_loaders.detect_format("-", head) == kind
    assert data_loaders.detect_format("lyrics", head) == kind
    assert data_loaders.detect_format("x.json", b"[1, 2]") == "json_array"  # the suffix says JSON


def test_a_broken_second_model_stops_the_run_before_any_scoring(demo_run, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(demo_run, broken, ignore=shutil.ignore_patterns("checkpoint-*", "demo_inputs"))
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    scored = []
    monkeypatch.setattr(predict, "score_documents", lambda *args, **kwargs: scored.append(1))
    path = write_jsonl(tmp_path / "texts.jsonl", TEXTS)
    assert predict.main(["--input", str(path), "--model_path", str(demo_run), str(broken)]) == 2
    assert f"could not load the model in {broken}" in capsys.readouterr().err
    assert scored == []


def test_machine_label_cannot_invert_a_train_py_model(demo_run, tmp_path, capsys):
    path = write_jsonl(tmp_path / "texts.jsonl", TEXTS)
    assert predict.main(["--input", str(path), "--model_path", str(demo_run), "--machine_label", "human"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --machine_label human: ") and "'machine'" in err
    # Naming its own machine class is accepted.
    out = tmp_path / "p.jsonl"
    argv = ["--input", str(path), "--model_path", str(demo_run), "--machine_label", "machine", "--output", str(out)]
    assert predict.main(argv) == 0 and len(read_jsonl(out)) == 3


def test_the_baseline_is_not_fitted_on_the_documents_it_scores(demo_run, tmp_path, caplog, monkeypatch):
    from m4_training import evaluation

    fitted_on = []

    def baseline(train_texts, train_labels, texts):
        fitted_on.extend(train_texts)
        return [0.5] * len(texts)

    monkeypatch.setattr(evaluation, "tfidf_baseline_probs", baseline)
    extra = [
        {"id": "h3", "text": "We drove for hours and stopped at a diner that smelled of burnt coffee.", "label": 0},
        {"id": "m3", "text": "Overall, this approach provides a comprehensive framework for success.", "label": 1},
    ]
    scored = write_jsonl(tmp_path / "scored.jsonl", TEXTS)
    baseline_train = write_jsonl(tmp_path / "baseline.jsonl", TEXTS[:2] + extra)
    argv = ["--input", str(scored), "--model_path", str(demo_run), "--eval", "--report_dir", str(tmp_path / "r")]
    with caplog.at_level(logging.WARNING):
        assert predict.main([*argv, "--baseline_train", str(baseline_train)]) == 0
    assert sorted(fitted_on) == sorted(row["text"] for row in extra)
    assert "removed 2 documents also in --input" in caplog.text
    fitted_on.clear()
    code = predict.main([*argv, "--report_dir", str(tmp_path / "r2"), "--baseline_train", str(scored)])
    assert code == 2 and fitted_on == []


def test_predict_reads_its_settings_from_a_json_file(tmp_path, capsys):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"input": "texts.jsonl", "model_path": ["a", "b"], "threshold": 0.25}))
    args = predict.parse_predict_args([str(path)])
    assert (args.input, args.model_path, args.threshold) == ("texts.jsonl", ["a", "b"], 0.25)
    path.write_text(json.dumps({"input": "texts.jsonl", "model_path": ["a"], "treshold": 0.25}))
    assert predict.main([str(path)]) == 2
    assert (
        capsys.readouterr().err == f'error: {path}: "treshold" is not a setting of predict.py (see predict.py --help)\n'
    )


def test_a_negative_number_is_a_value_not_a_flag(capsys):
    for value in ("-inf", "-1e-3", "-0.5"):
        assert predict.main(["--input", "x.jsonl", "--model_path", "m", "--threshold", value]) == 2
        assert capsys.readouterr().err == f"error: --threshold must be in [0, 1], got {float(value)}\n"
