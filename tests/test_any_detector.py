"""predict.py with any detector: id2label spellings, the machine probability from the right index, the window and
normalisation of a model without training_config.json, checkpoint-N of a run, several models side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_jsonl
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

import predict
from m4_training.cli import UserError
from m4_training.evaluation import THRESHOLD_GIVEN, classification_metrics
from m4_training.scoring import load_detector, machine_label_index

TEXTS = [
    "moreover the city water system plays a crucial role in growth in 1999",
    "honestly i think the rail networks look off lol",
    " ".join(f"furthermore the river ecology study number {i} shows a wide range of results." for i in range(30)),
    "tbh my buddy said the tax policy data look weird",
]


@pytest.mark.parametrize(
    "id2label, machine",
    [
        ({0: "human", 1: "machine"}, 1),
        ({0: "Fake", 1: "Real"}, 0),  # openai-community/roberta-base-openai-detector
        ({0: "Human", 1: "ChatGPT"}, 1),  # Hello-SimpleAI/chatgpt-detector-roberta
        ({0: "LABEL_0", 1: "LABEL_1"}, 1),  # a model saved without label names
        ({0: "AI-generated", 1: "Human-written"}, 0),
        ({0: "real", 1: "fake"}, 1),
        ({0: "human-written", 1: "machine-generated"}, 1),
        ({0: "ai", 1: "other"}, 0),
        ({0: "original", 1: "something"}, 1),  # the one human label decides
    ],
)
def test_machine_label_found_from_id2label(id2label, machine):
    assert machine_label_index(id2label) == machine


def test_ambiguous_or_wrong_labels_are_one_line_errors_listing_id2label():
    with pytest.raises(UserError) as error:
        machine_label_index({0: "negative", 1: "positive"}, source="some/model")
    assert str(error.value) == (
        "some/model: cannot tell which label is the machine class from id2label {0: negative, 1: positive}; "
        "name it with --machine_label"
    )
    with pytest.raises(UserError, match="cannot tell"):
        machine_label_index({0: "ai", 1: "machine"})  # two machine-like names
    with pytest.raises(UserError, match="cannot tell"):
        machine_label_index({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    assert machine_label_index({0: "negative", 1: "positive"}, "Negative") == 0
    with pytest.raises(
        UserError, match=r"--machine_label bot is not one of the model's labels: id2label \{0: a, 1: b\}"
    ):
        machine_label_index({0: "a", 1: "b"}, "bot")


def build_detector(directory, tokenizer_dir, id2label, positions=96, seed=1):
    """A tiny random BERT classifier with these label names, saved with the demo tokenizer."""
    config = BertConfig(
        vocab_size=len(AutoTokenizer.from_pretrained(tokenizer_dir)),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_model_dir):
    """Local stand-ins for published detectors: same weights, different label spellings and orders."""
    root = tmp_path_factory.mktemp("published")
    return {
        "fake_real": build_detector(root / "fake_real", tiny_model_dir, {0: "Fake", 1: "Real"}),
        "real_fake": build_detector(root / "real_fake", tiny_model_dir, {0: "Real", 1: "Fake"}),
        "chatgpt": build_detector(root / "chatgpt", tiny_model_dir, {0: "Human", 1: "ChatGPT"}, positions=1024, seed=2),
        "ambiguous": build_detector(root / "ambiguous", tiny_model_dir, {0: "negative", 1: "positive"}),
    }


def run(argv, capsys):
    code = predict.main(argv)
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines() if line.strip()], captured.err


def softmax_of(model_dir, text):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits
    return torch.softmax(logits, -1)[0].numpy()


@pytest.mark.parametrize(
    "id2label, machine",
    [
        ({0: "Fake", 1: "Real"}, 0),
        ({0: "Human", 1: "ChatGPT"}, 1),
        ({0: "LABEL_0", 1: "LABEL_1"}, 1),
        ({0: "machine-generated", 1: "human-written"}, 0),
        ({0: "real", 1: "AI"}, 1),
        ({0: "generated", 1: "original"}, 0),
    ],
)
def test_local_detector_directories_score_their_machine_label(id2label, machine, tiny_model_dir, tmp_path):
    model_dir = build_detector(tmp_path / "detector", tiny_model_dir, id2label)
    detector = load_detector(model_dir)
    assert (
        detector.machine_index == machine
        and detector.settings_from == "defaults for a model without training_config.json"
    )
    scored, _, _ = detector.score([TEXTS[0]])
    assert scored["prob_machine"][0] == pytest.approx(softmax_of(model_dir, TEXTS[0])[machine], abs=1e-5)


def test_machine_probability_comes_from_the_machine_labels_index(published, tmp_path, capsys):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS[:2])])
    _, fake_first, _ = run(["--model_path", str(published["fake_real"]), "--input", str(path)], capsys)
    _, fake_second, _ = run(["--model_path", str(published["real_fake"]), "--input", str(path)], capsys)
    for text, row_a, row_b in zip(TEXTS, fake_first, fake_second):
        by_hand = softmax_of(published["fake_real"], text)
        assert row_a["prob_machine"] == pytest.approx(by_hand[0], abs=1e-5)  # "Fake" is index 0 here
        assert row_b["prob_machine"] == pytest.approx(by_hand[1], abs=1e-5)  # same weights, "Fake" is index 1
        assert row_a["prob_machine"] + row_b["prob_machine"] == pytest.approx(1.0, abs=1e-5)
        assert row_a["pred"] == (1 if row_a["prob_machine"] >= 0.5 else 0)  # threshold 0.5


def test_ambiguous_model_needs_machine_label(published, tmp_path, capsys):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": TEXTS[0]}])
    code, rows, err = run(["--model_path", str(published["ambiguous"]), "--input", str(path)], capsys)
    assert code == 2 and rows == [] and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ") and "{0: negative, 1: positive}" in err
    argv = ["--model_path", str(published["ambiguous"]), "--input", str(path), "--machine_label", "negative"]
    code, rows, _ = run(argv, capsys)
    assert code == 0 and rows[0]["prob_machine"] == pytest.approx(softmax_of(published["ambiguous"], TEXTS[0])[0])


def test_window_and_no_normalisation_for_models_without_training_config(published, tiny_model_dir, tmp_path, capsys):
    small = load_detector(published["fake_real"])  # 96 positions
    assert (small.max_length, small.chunk_overlap, small.threshold) == (96, 47, 0.5)
    assert small.normalization is None and small.normalize("a  1\nb") == "a  1\nb"
    assert load_detector(published["chatgpt"]).max_length == 512  # 1024 positions, capped
    assert load_detector(published["chatgpt"], max_length=200).max_length == 200
    with pytest.raises(UserError, match="--max_length 200 exceeds the 96 positions"):
        load_detector(published["fake_real"], max_length=200)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    n_tokens = len(tokenizer(TEXTS[2], add_special_tokens=False)["input_ids"])
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": TEXTS[2]}, {"text": "in 1999 we"}, {"text": "in 0000 we"}])
    code, rows, _ = run(["--model_path", str(published["fake_real"]), "--input", str(path)], capsys)
    assert code == 0
    assert rows[0]["n_chunks"] == 1 + -(-(n_tokens - 94) // (94 - 47))  # 94 text tokens per 96-token window
    assert rows[1]["prob_machine"] != pytest.approx(rows[2]["prob_machine"], abs=1e-7)  # digits kept as written
    _, rows_64, _ = run(
        ["--model_path", str(published["fake_real"]), "--input", str(path), "--max_length", "64"], capsys
    )
    assert rows_64[0]["n_chunks"] == 1 + -(-(n_tokens - 62) // (62 - 31))


def test_checkpoint_of_a_run_is_scored_with_the_runs_settings(demo_run, tmp_path, capsys):
    checkpoint = sorted(demo_run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    settings = json.loads((demo_run / "training_config.json").read_text())
    detector = load_detector(checkpoint)
    assert detector.max_length == settings["chunking"]["max_length"] and detector.normalization.digits
    assert detector.threshold == settings["threshold"] and detector.machine_index == 1
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": TEXTS[0]}, {"text": TEXTS[0].replace("1999", "0000")}])
    _, rows, _ = run(["--model_path", str(checkpoint), "--input", str(path)], capsys)
    assert rows[0]["prob_machine"] == pytest.approx(rows[1]["prob_machine"], abs=1e-7)  # digits normalised
    assert rows[0]["prob_machine"] == pytest.approx(softmax_of(checkpoint, TEXTS[0].replace("1999", "0000"))[1])

    unfinished = tmp_path / "run" / checkpoint.name
    unfinished.mkdir(parents=True)
    (unfinished / "trainer_state.json").write_text("{}")
    with pytest.raises(UserError, match="a checkpoint of a run that has not finished"):
        load_detector(unfinished)


def test_hub_id_offline_and_missing_directory_are_one_line_errors(tmp_path, capsys):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": TEXTS[0]}])
    for model, expected in (
        ("no-such-org/no-such-detector", "could not load the model config 'no-such-org/no-such-detector'"),
        (str(tmp_path / "missing" / "model"), "model directory not found"),
    ):
        code, _, err = run(["--model_path", model, "--input", str(path)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err


def test_several_models_one_report_row_and_curve_each(demo_run, published, tmp_path, capsys):
    data_dir = demo_run / "demo_inputs" / "m4"
    m4_file = data_dir / "reddit_davinci.jsonl"
    report_dir = tmp_path / "comparison"
    models = [str(demo_run), str(published["fake_real"]), str(published["chatgpt"])]
    argv = ["--model_path", *models, "--input", str(m4_file), "--eval", "--report_dir", str(report_dir),
            "--baseline_train", str(data_dir / "arxiv_dolly2.jsonl")]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0
    comparison = json.loads((report_dir / "metrics.json").read_text())
    assert list(comparison["models"]) == [demo_run.name, "fake_real", "chatgpt"]
    assert comparison["models"]["fake_real"]["machine_label"] == "Fake"
    assert comparison["baseline"]["name"] == "tfidf_logreg"
    rows = [json.loads(line) for line in (report_dir / "predictions.jsonl").read_text().splitlines()]
    n_documents = 2 * sum(1 for line in m4_file.open() if line.strip())
    assert len(rows) == 3 * n_documents
    for name, result in comparison["models"].items():
        mine = [r for r in rows if r["model"] == name]
        labels = np.array([r["label"] for r in mine])
        probs = np.array([r["prob_machine"] for r in mine])
        expected = classification_metrics(labels, probs, result["threshold"]["value"])
        assert result["document"]["auroc"] == pytest.approx(expected["auroc"])
        assert result["document"]["f1_macro"] == pytest.approx(expected["f1_macro"])
    assert comparison["models"]["fake_real"]["threshold"]["value"] == 0.5
    report = (report_dir / "report.md").read_text()
    table = report.split("## By domain")[0]
    for name in (demo_run.name, "fake_real", "chatgpt", "tfidf_logreg"):
        assert sum(line.startswith(f"| {name} |") for line in table.splitlines()) == 1, name
    assert (report_dir / "roc.png").stat().st_size > 0
    assert all(name in err for name in ("fake_real", "chatgpt", "tfidf_logreg"))

    # Each row equals what that model gives alone on the same input.
    single = tmp_path / "single"
    code, _, _ = run(
        ["--model_path", models[1], "--input", str(m4_file), "--eval", "--report_dir", str(single)], capsys
    )
    alone = json.loads((single / "metrics.json").read_text())
    assert alone["document"]["auroc"] == pytest.approx(comparison["models"]["fake_real"]["document"]["auroc"])
    assert alone["threshold"]["chosen_on"].startswith("no documents: 0.5")


def test_threshold_sentence_of_a_model_without_training_config(published, demo_run, tmp_path, capsys):
    """The default 0.5 is named as such (no FPR target claimed); --threshold is named as given, for any model."""
    m4_file = demo_run / "demo_inputs" / "m4" / "reddit_davinci.jsonl"
    common = ["--model_path", str(published["fake_real"]), "--input", str(m4_file), "--eval"]
    code, _, err = run([*common, "--report_dir", str(tmp_path / "default")], capsys)
    report = (tmp_path / "default" / "report.md").read_text()
    assert code == 0 and "**0.5000** (`prob_machine >= threshold` means machine): the default for a model" in report
    assert "optimistic" not in report and "applied here unchanged" not in report
    assert "the default 0.5 of a model without training_config.json, for no FPR target" in err
    code, _, err = run([*common, "--threshold", "0.3", "--report_dir", str(tmp_path / "given")], capsys)
    metrics = json.loads((tmp_path / "given" / "metrics.json").read_text())
    assert code == 0 and metrics["threshold"] == metrics["threshold"] | {"value": 0.3, "chosen_on": THRESHOLD_GIVEN}
    assert "given with --threshold" in (tmp_path / "given" / "report.md").read_text() and "given with" in err
