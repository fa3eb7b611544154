"""app.py without a browser: window shading against a hand computation, page/API/upload == predict.py, the input
caps, the model panel, start-up errors, and the training path staying free of gradio."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, read_jsonl, write_jsonl
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import chunking
import predict
from data_loaders import normalize_text
from m4_training import serving
from m4_training.cli import UserError
from m4_training.scoring import covering_mean, load_detector, score_windows
from m4_training.serving import AppArguments

LONG_TEXT = " ".join(
    f"Furthermore the river ecology study number {i} shows that honestly i think the data look off." for i in range(40)
)
SHORT_TEXT = "moreover the city water system plays a crucial role in growth"


@pytest.fixture(scope="module")
def service(demo_run):
    return serving.DetectorService(load_detector(demo_run), AppArguments(model_path=str(demo_run)))


def predict_rows(demo_run, path, capsys, *extra):
    assert predict.main(["--model_path", str(demo_run), "--input", str(path), *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# ----------------------------------------------------------------------------------------------- windows


def test_covering_mean_against_a_hand_computation():
    # Three windows over 7 tokens: [0, 4) at 0.2, [2, 6) at 0.6, [4, 7) at 0.9.
    token_probs = covering_mean(np.array([[0, 4], [2, 6], [4, 7]]), np.array([0.2, 0.6, 0.9]), 7)
    assert token_probs == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.75, 0.75, 0.9])


def test_window_token_ranges_are_the_chunking_arithmetic():
    spec = chunking.WindowSpec(content=10, overlap=3, prefix=(101,), suffix=(102,))
    assert chunking.window_token_ranges(25, spec).tolist() == [[0, 10], [7, 17], [14, 24], [21, 25]]
    assert chunking.window_token_ranges(10, spec).tolist() == [[0, 10]]
    assert chunking.window_token_ranges(11, spec).tolist() == [[0, 10], [7, 11]]
    assert chunking.window_token_ranges(0, spec).tolist() == [[0, 0]]
    ids = list(range(1000, 1025))
    windows, _ = chunking.window_token_ids([ids], spec)
    expected = [[101, *ids[a:b], 102] for a, b in chunking.window_token_ranges(25, spec)]
    assert windows.to_pylist() == expected


def test_shaded_windows_are_the_scored_chunks_and_shading_is_the_covering_mean(demo_run):
    """Windows cut by hand from the text's tokens, each scored alone, against what the page shades."""
    detector = load_detector(demo_run)
    text = normalize_text(LONG_TEXT, detector.normalization)
    (windows,) = score_windows(detector, [text])
    tokenizer = AutoTokenizer.from_pretrained(demo_run)
    model = AutoModelForSequenceClassification.from_pretrained(demo_run).eval()
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    content = detector.max_length - tokenizer.num_special_tokens_to_add(pair=False)
    step = content - detector.chunk_overlap
    hand_windows = []
    for start in range(0, len(ids), step):
        hand_windows.append((start, min(start + content, len(ids))))
        if start + content >= len(ids):
            break
    assert len(hand_windows) >= 3 and windows.window_tokens.tolist() == [list(w) for w in hand_windows]
    assert windows.token_spans.tolist() == [list(span) for span in encoding["offset_mapping"]]
    hand_probs = []
    for start, end in hand_windows:
        window = [tokenizer.cls_token_id, *ids[start:end], tokenizer.sep_token_id]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([window])).logits
        hand_probs.append(float(logits.softmax(-1)[0, 1]))
    assert windows.window_probs == pytest.approx(hand_probs, abs=1e-5)
    assert windows.prob_machine == pytest.approx(np.mean(hand_probs), abs=1e-6)

    expected_tokens = [
        np.mean([p for (a, b), p in zip(hand_windows, hand_probs) if a <= k < b]) for k in range(len(ids))
    ]
    assert windows.token_probs() == pytest.approx(expected_tokens, abs=1e-5)
    segments = serving.shading_segments(windows)
    assert segments[0][0] == 0 and segments[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))  # the whole text, no gaps
    assert len(segments) == 2 * len(hand_windows) - 1  # alternately one window, then an overlap of two
    for k, (char_start, _) in enumerate(encoding["offset_mapping"]):
        (shade,) = [p for a, b, p in segments if a <= char_start < b]
        assert shade == pytest.approx(expected_tokens[k], abs=1e-5)


# ----------------------------------------------------------------------------------------------- one scoring path


def test_page_and_api_agree_with_predict(service, demo_run, tmp_path, capsys):
    texts = [LONG_TEXT, SHORT_TEXT + " 1999", ""]
    expected = predict_rows(demo_run, write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts]), capsys)
    assert [row["id"] for row in expected] == [1, 2]  # predict.py skips the empty text

    page = service.score_page_texts(texts)
    for result, row in zip(page, expected):
        assert result.prob_machine == pytest.approx(row["prob_machine"], abs=1e-7)
        assert result.label == ("human", "machine")[row["pred"]] and len(result.windows.window_probs) == row["n_chunks"]
    assert page[2].prob_machine is None and "Type or paste a text" in page[2].message
    assert page[1].display_text.endswith(" 1999") and page[1].windows.text.endswith(" 0000")
    assert (page[0].too_short, page[1].too_short) == (False, True)
    note = serving.result_html(page[1], service.threshold, 50)
    assert "Too short to judge reliably" in note and "Too short" not in serving.result_html(page[0], 0.5, 50)

    api = service.score_requests([texts, [{"id": "doc-7", "text": SHORT_TEXT, "label": 1}], [], ["x", 5]])
    assert [row["id"] for row in api[0][:2]] == [1, 2] and api[0][2:] == [{"item": 3, "skipped": "text_empty"}]
    for got, row in zip(api[0], expected):
        assert got == row | {"prob_machine": pytest.approx(row["prob_machine"], abs=1e-7)}
    assert api[1][0]["id"] == "doc-7" and api[1][0]["label"] == 1
    assert api[1][0]["prob_machine"] == pytest.approx(service.score_page_texts([SHORT_TEXT])[0].prob_machine)
    assert "non-empty JSON list" in api[2]["error"]
    assert api[3] == {"error": "item 2 is neither a text nor an object with a `text` string"}


def test_api_reads_its_items_as_predict_reads_them_as_jsonl(service, demo_run, tmp_path, capsys):
    items = [
        {"id": "a", "text": LONG_TEXT, "domain": "news", "label": 0},
        {"id": "half \udc00 pair", "text": SHORT_TEXT},  # a lone surrogate, here outside the text: skipped
        {"text": SHORT_TEXT + " 2024", "label": "machine", "generator": "gpt"},
        {"text": SHORT_TEXT, "label": "AI"},  # not a label: scored without one
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    expected = predict_rows(demo_run, path, capsys)
    (got,) = service.score_requests([items])
    assert got[3:] == [{"item": 2, "skipped": "lone_surrogate"}]  # answered, as an upload counts it
    got = got[:3]
    assert [row["id"] for row in got] == ["a", 3, 4] and got[0]["domain"] == "news" and got[1]["generator"] == "gpt"
    assert [row.get("label") for row in got] == [0, 1, None]
    assert got == [row | {"prob_machine": pytest.approx(row["prob_machine"], abs=1e-7)} for row in expected]


def test_input_cap_has_a_clear_message_and_spares_the_other_requests(demo_run):
    service = serving.DetectorService(load_detector(demo_run), AppArguments(model_path=str(demo_run), max_chars=100))
    (page,) = service.score_page_texts(["x" * 101])
    assert page.prob_machine is None and "101 characters" in page.message and "at most 100" in page.message
    assert "--max_chars" in page.message
    api = service.score_requests([["a" * 60, "b" * 41], [SHORT_TEXT]])
    assert "101 characters" in api[0]["error"] and api[1][0]["id"] == 1


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.csv", "essay.txt", "reddit_davinci.jsonl"])
def test_upload_writes_the_bytes_predict_writes(service, demo_run, tmp_path, name):
    path = tmp_path / name
    if name == "docs.jsonl":
        write_jsonl(path, [{"id": "a", "text": LONG_TEXT, "domain": "news"}, "", {"text": SHORT_TEXT, "label": 0}])
    elif name == "docs.csv":
        path.write_text(f'id,text,label\nx1,"{LONG_TEXT}",machine\nx2,"{SHORT_TEXT}",human\n', encoding="utf-8")
    elif name == "essay.txt":
        path.write_text(LONG_TEXT + "\n", encoding="utf-8")
    else:  # M4 rows: two documents each, domain and generator from the file name
        shutil.copy(demo_run / "demo_inputs" / "m4" / name, path)
    reference = tmp_path / "predict_out.jsonl"
    assert predict.main(["--model_path", str(demo_run), "--input", str(path), "--output", str(reference)]) == 0
    rows, output, _ = service.score_upload(path)
    assert output.name == f"{path.stem}.predictions.jsonl"
    assert output.read_bytes() == reference.read_bytes()
    assert rows == [json.loads(line) for line in reference.read_text().splitlines()]


def test_unsupported_or_oversized_upload_is_refused_clearly(demo_run, tmp_path):
    service = serving.DetectorService(
        load_detector(demo_run), AppArguments(model_path=str(demo_run), max_upload_mb=0.001)
    )
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    with pytest.raises(UserError, match=r"paper.pdf: unsupported file type; upload .txt, .jsonl, .csv"):
        service.score_upload(pdf)
    big = tmp_path / "big.txt"
    big.write_text(LONG_TEXT, encoding="utf-8")
    with pytest.raises(UserError, match=r"big.txt is 0.0 MB; the page takes files up to 0.001 MB"):
        service.score_upload(big)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty input, nothing to score"):
        serving.DetectorService(load_detector(demo_run), AppArguments(model_path=str(demo_run))).score_upload(empty)


# ----------------------------------------------------------------------------------------------- the model panel


def test_model_panel_shows_data_threshold_metrics_and_limits(demo_run, tmp_path):
    """Read from the run's JSON files: a model directory without its card (README.md) shows the same panel."""
    model = tmp_path / "model"
    shutil.copytree(demo_run, model, ignore=shutil.ignore_patterns("checkpoint-*", "demo_inputs", "README.md"))
    panel = serving.model_description(load_detector(model))
    served_from_the_run = serving.model_description(load_detector(demo_run))
    assert panel.split("\n\n", 1)[1] == served_from_the_run.split("\n\n", 1)[1]  # all but the **Model** line
    config = json.loads((demo_run / "training_config.json").read_text())
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert f"**Decision threshold** {config['threshold']:.4f}" in panel
    assert f"at most {config['target_fpr']:g}" in panel
    counts = {}
    for row in read_jsonl(demo_run / "splits.jsonl"):  # documents and chunks per side and label, counted here
        for name, n in (("documents", 1), ("chunks", row["n_chunks"])):
            counts[name, row["split"], row["label"]] = counts.get((name, row["split"], row["label"]), 0) + n
    for name in ("documents", "chunks"):
        cells = [counts[name, side, label] for side in ("train", "val") for label in (0, 1)]
        assert f"| {name} | " + " | ".join(map(str, cells)) + " |" in panel
    assert "human posts from `reddit_posts.jsonl`" in panel and "validation generator `flant5` never trained" in panel
    assert f"| at the threshold | {metrics['document']['n']} | {metrics['document']['accuracy']:.3f} |" in panel
    limits = panel.split("**Intended use and limits**", 1)[1]
    assert "at or below 0.05; on other human writing" in limits and "Short texts (a sentence or two)" in limits
    assert "Generators not in the training data" in limits


def test_a_model_without_training_config_is_served_as_predict_scores_it(tiny_model_dir, tmp_path, capsys):
    """Texts as written (no normalisation it was not trained with), P(machine) at its machine label's index."""
    from test_any_detector import build_detector, softmax_of

    model_dir = build_detector(tmp_path / "published", tiny_model_dir, {0: "Fake", 1: "Real"})
    service = serving.DetectorService(load_detector(model_dir), AppArguments(model_path=str(model_dir)))
    text = "Moreover  the city water system\n\nplays a crucial role in 1999"
    (page,) = service.score_page_texts([text])
    assert page.windows.text == text and page.display_text == text
    assert page.prob_machine == pytest.approx(float(softmax_of(model_dir, text)[0]), abs=1e-5)
    assert page.label == ("machine" if page.prob_machine >= 0.5 else "human")
    upload = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": text}, {"text": LONG_TEXT}])
    expected = predict_rows(model_dir, upload, capsys)
    assert expected[0]["prob_machine"] == pytest.approx(page.prob_machine, abs=1e-7)
    rows, output, _ = service.score_upload(upload)
    assert rows == expected and output.read_text().splitlines()[0] == json.dumps(expected[0])
    assert service.score_requests([[text]])[0] == [expected[0] | {"id": 1}]
    panel = serving.model_description(service.detector)
    assert "its machine class is the label `Fake`" in panel and "texts scored as written" in panel
    assert "**Decision threshold** 0.5000 on P(machine): the default for a model without" in panel


def test_examples_are_written_by_the_project():
    examples = serving.example_texts()
    assert len(examples) == 4 and examples == serving.example_texts()  # seeded
    assert len(examples["Long machine-written text"].split()) > 300 > len(examples["Short human post"].split())


# ----------------------------------------------------------------------------------------------- start-up


def test_bad_model_path_is_one_line_at_start_up_exit_2(tmp_path, capsys):
    import app

    assert app.main(["--model_path", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: model directory not found: {tmp_path / 'missing'}\n"


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "give --model_path DIR (an output directory of train.py) or --demo"),
        (["--demo", "--model_path", "x"], "--demo serves demo_output/; give --model_path or --demo, not both"),
        (["--model_path", "x", "--port", "0"], "--port must be between 1 and 65535, got 0"),
        (["--model_path", "x", "--max_chars", "0"], "--max_chars must be at least 1, got 0"),
        (["--model_path", "x", "--max_upload_mb", "nan"], "--max_upload_mb must be a positive number, got nan"),
        (
            ["--model_path", "x", "--share"],
            "Some specified arguments are not used by the HfArgumentParser: ['--share']",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(argv, expected, capsys):
    import app

    assert app.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1


def test_unloadable_weights_fail_at_start_up(demo_run, tmp_path, capsys):
    import app

    model = tmp_path / "model"
    shutil.copytree(demo_run, model, ignore=shutil.ignore_patterns("checkpoint-*", "demo_inputs"))
    (model / "model.safetensors").write_bytes(b"not weights")
    assert app.main(["--model_path", str(model), "--port", "1"]) == 2
    assert capsys.readouterr().err.startswith(f"error: could not load the model in {model}")


def test_port_in_use_is_one_line_error(demo_run, capsys):
    import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app.main(["--model_path", str(demo_run), "--port", str(port)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port} (the port is taken, or the address is not this machine's); "
        "choose another --port or --host"
    )


def test_help_lists_every_setting_with_its_default(capsys):
    import app

    with pytest.raises(SystemExit) as exited:
        app.main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--host", "127.0.0.1"), ("--port", "7860"), ("--max_chars", "200000")):
        assert re.search(rf"{flag} {flag[2:].upper()}[^()]*\(default: {default}\)", text), flag


def test_demo_model_is_trained_only_when_missing(demo_run, tmp_path, monkeypatch):
    calls = []

    def fake_train(argv):
        calls.append(argv)
        shutil.copytree(demo_run, argv[argv.index("--output_dir") + 1], dirs_exist_ok=True)
        return 0

    monkeypatch.setattr(serving.train, "main", fake_train)
    target = tmp_path / "demo_output"
    assert serving.demo_model_dir(target) == target and calls == [["--demo", "--output_dir", str(target)]]
    assert serving.demo_model_dir(target) == target and len(calls) == 1  # finished: served as it is
    (target / "metrics.json").unlink()
    monkeypatch.setattr(serving.train, "main", lambda argv: 3)
    with pytest.raises(UserError, match="training the demo model failed") as raised:
        serving.demo_model_dir(target)
    assert raised.value.exit_code == 3


def test_training_path_does_not_import_gradio():
    code = (
        "import sys, train, predict, data_loaders, prepare_data; print(sorted(m for m in sys.modules if 'gradio' in m))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
