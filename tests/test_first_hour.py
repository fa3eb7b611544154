"""What a new user meets first: a demo whose detector visibly works (and gives the same model on every run), a
terminal that reads cleanly, the training plan before training, one line per library fact, --help with every
default, predict.py reports that say where the threshold came from, and a README picture the demo made."""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
from dataclasses import fields

import numpy as np
import pytest
from conftest import ROOT, read_jsonl, tiny_train_args, write_jsonl
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, Trainer

import predict
import prepare_data
import train
from m4_training import demo, progress
from m4_training.cli import CommandLineParser
from m4_training.evaluation import choose_threshold, classification_metrics
from m4_training.train_args import TRAIN_GROUPS, parse_train_args, train_parser

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------------------------- the demo


def test_demo_detector_detects_on_its_own_validation_documents(demo_run):
    """AUROC >= 0.95 and recall >= 0.8 at the threshold it picked, with the human FPR target held in every
    domain: recomputed from eval_predictions.jsonl, not taken from metrics.json alone."""
    metrics = json.loads((demo_run / "metrics.json").read_text())
    target = metrics["threshold"]["target_fpr"]
    predictions = read_jsonl(demo_run / "eval_predictions.jsonl")
    labels = np.array([p["label"] for p in predictions])
    probs = np.array([p["prob_machine"] for p in predictions])
    domains = np.array([p["domain"] for p in predictions])
    threshold = choose_threshold(labels, probs, target, domains)
    assert threshold == metrics["threshold"]["value"]
    overall = classification_metrics(labels, probs, threshold)
    assert overall["n_machine"] >= 20 and overall["n_human"] >= 40
    assert overall["auroc"] >= 0.95
    assert overall["recall"] >= 0.8
    assert overall["fpr_human"] <= target
    for domain in set(domains[labels == 0]):
        in_domain = domains == domain
        assert classification_metrics(labels[in_domain], probs[in_domain], threshold)["fpr_human"] <= target
    assert metrics["document"]["recall"] == pytest.approx(overall["recall"])
    assert metrics["document"]["auroc"] == pytest.approx(overall["auroc"])


def test_demo_sample_and_model_are_the_same_on_every_run(tmp_path):
    """The generated files, the tokenizer's vocabulary and the untrained model are byte-identical for a seed."""
    first = demo.prepare_demo(tmp_path / "first")
    second = demo.prepare_demo(tmp_path / "second")
    for directory_a, directory_b in zip(first, second):
        files_a = sorted(p for p in ([directory_a] if directory_a.is_file() else directory_a.iterdir()))
        files_b = sorted(p for p in ([directory_b] if directory_b.is_file() else directory_b.iterdir()))
        assert [p.name for p in files_a] == [p.name for p in files_b]
        for a, b in zip(files_a, files_b):
            assert a.read_bytes() == b.read_bytes(), a.name
    other = demo.prepare_demo(tmp_path / "other", seed=1)
    assert (other[1]).read_bytes() != first[1].read_bytes()


def test_two_demo_runs_give_the_same_model_and_metrics(demo_run, tmp_path):
    """One torch thread (the demo's own setting on CPU) and a deterministic tokenizer: same seed, same bytes."""
    assert train.main(["--demo", "--output_dir", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (demo_run / "tokenizer.json").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (demo_run / "model.safetensors").read_bytes()
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again == json.loads((demo_run / "metrics.json").read_text())


def test_demo_vocabulary_is_ranked_by_count_then_spelling():
    vocabulary = demo.demo_vocabulary(["b a b c", "B z"], vocab_size=1000)
    assert list(vocabulary)[: len(demo.SPECIAL_TOKENS)] == list(demo.SPECIAL_TOKENS)
    assert {"a", "##a", "z", "##z", "0", "##9", "!"} <= set(vocabulary)  # every ASCII character: no unknown word
    assert list(vocabulary.values()) == list(range(len(vocabulary)))
    words = demo.demo_vocabulary(["tbh lol tbh", "furthermore lol tbh"], vocab_size=1000)
    assert [w for w in words if len(w) > 2 and not w.startswith("##") and w.isalpha()] == ["tbh", "lol", "furthermore"]


def test_demo_sample_keeps_the_real_files_quirks(demo_inputs):
    data_dir, reddit_file, _ = demo_inputs
    rows = {path.stem: [json.loads(line) for line in open(path)] for path in data_dir.glob("*.jsonl")}
    assert {"arxiv_chatGPT", "reddit_dolly2", "wikipedia_flant5"} <= set(rows)
    human = [row.get("human_text", row.get("text")) for row in rows["wikipedia_chatGPT"]]
    assert [row["text"] for row in rows["wikipedia_flant5"]] == human  # the same human texts, under `text`
    assert "source_id" in rows["arxiv_davinci"][0] and "source_ID" in rows["arxiv_chatGPT"][0]
    assert "Unnamed: 0" in rows["arxiv_dolly2"][0]
    assert isinstance(rows["reddit_davinci"][5]["machine_text"], list)
    assert rows["arxiv_chatGPT"][3]["machine_text"] == ""
    # The registers share no phrase: what the demo model learns is there to learn.
    machine_phrases = demo.MACHINE_PHRASES + sum(demo.GENERATOR_PHRASES.values(), ())
    human_words = {word for phrase in demo.HUMAN_PHRASES for word in phrase.split()}
    assert not human_words & {word for phrase in machine_phrases for word in phrase.split()}
    assert read_jsonl(reddit_file)[0]["label"] == 0


# ----------------------------------------------------------------------------------------------- the terminal


def test_demo_terminal_is_plain_and_says_what_it_did(demo_run, demo_terminal):
    metrics = json.loads((demo_run / "metrics.json").read_text())
    report = json.loads((demo_run / "data_report.json").read_text())
    assert "\x1b[" not in demo_terminal  # no colour codes (transformers' load report) and no nested bars
    for noise in ("Writing model shards", "Loading weights", "LOAD REPORT", "MISSING", "Chunking", "Predicting"):
        assert noise not in demo_terminal, noise
    # Trainer logs: numbers as numbers, never quoted strings.
    log_lines = re.findall(r"step \d+/\d+  [^\r\n]*", demo_terminal)
    assert any(" loss " in line for line in log_lines) and any("eval_auroc" in line for line in log_lines)
    assert not re.search(r"'-?\d", demo_terminal)
    loss = re.search(r"step (\d+)/\d+  loss (\S+)", demo_terminal)
    assert float(loss.group(2)) > 0 and int(loss.group(1)) == 10  # --logging_steps 10 of the demo
    # The plan before training, the projected time after the first logged steps.
    chunks = sum(report["chunks"]["train"].values())
    plan = re.search(r"Training plan: (\d+) training chunks, global batch 16 -> (\d+) .* = (\d+) steps", demo_terminal)
    assert plan and int(plan.group(1)) == chunks
    steps = int(plan.group(3))
    assert steps == 3 * math.ceil(chunks / 16) and (demo_run / f"checkpoint-{steps}").is_dir()  # the Trainer's count
    assert re.search(rf"Projected: {steps - 10} more steps at [\d.e-]+ s/step", demo_terminal)
    # The summary: the threshold, the baseline beside the transformer, which rows hold human documents, a toy.
    assert f"decision threshold {metrics['threshold']['value']:.4f}" in demo_terminal
    assert "tfidf_logreg F1" in demo_terminal and "tfidf_logreg AUROC" in demo_terminal
    assert f"its own threshold {metrics['baseline']['threshold']['value']:.4f}" in demo_terminal
    assert "generator flant5 + all human" in demo_terminal and "generator human (human only)" in demo_terminal
    assert demo.TOY_NOTE in demo_terminal


def test_optimizer_steps_agree_with_the_trainer(tiny_model_dir, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    cases = [
        (103, ["--batch_size", "8"]),
        (103, ["--batch_size", "8", "--gradient_accumulation_steps", "3", "--epochs", "2.5"]),
        (40, ["--batch_size", "16", "--max_steps", "7"]),
        (5, ["--batch_size", "16"]),
    ]
    for n_chunks, flags in cases:
        args = parse_train_args(["--demo", "--output_dir", str(tmp_path), *flags]).training
        dataset = Dataset.from_dict({"input_ids": [[1, 2]] * n_chunks, "labels": [0] * n_chunks})
        trainer = Trainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset)
        expected = trainer.set_initial_training_values(args, trainer.get_train_dataloader())
        per_epoch, total = progress.optimizer_steps(n_chunks, args)
        assert (per_epoch, total) == (expected[1], expected[6]), flags


def test_dry_run_prints_chunks_and_steps(demo_inputs, tmp_path, capsys):
    out = tmp_path / "dry"
    flags = ["--dry_run", "--no_cache", "--batch_size", "4", "--gradient_accumulation_steps", "2", "--epochs", "2"]
    assert train.main(tiny_train_args(demo_inputs, out, *flags)) == 0
    printed = capsys.readouterr().out
    chunks = sum(json.loads((out / "data_report.json").read_text())["chunks"]["train"].values())
    per_epoch = math.ceil(math.ceil(chunks / 4) / 2)
    assert (
        f"Training plan: {chunks} training chunks, global batch 8 -> {per_epoch} optimizer steps per epoch x 2 "
        f"epochs = {2 * per_epoch} steps"
    ) in printed


@pytest.mark.parametrize("disable_tqdm", [False, True], ids=["bars", "disable_tqdm"])
def test_log_lines_and_projection_with_and_without_bars(demo_inputs, tmp_path, capsys, disable_tqdm):
    """The same lines either way; the bars (training, and evaluation from 20 batches) only without --disable_tqdm."""
    out = tmp_path / "out"
    flags = ["--max_steps", "6", "--eval_batch_size", "1", "--disable_tqdm", str(disable_tqdm), "--baseline", "none"]
    assert train.main(tiny_train_args(demo_inputs, out, *flags)) == 0
    printed = capsys.readouterr()
    val_chunks = sum(json.loads((out / "data_report.json").read_text())["chunks"]["val"].values())
    assert re.search(r"^step 5/6  loss [\d.]+  grad_norm [\d.]+  learning_rate [\d.e-]+  epoch ", printed.out, re.M)
    assert re.search(r"^Projected: 1 more steps at [\d.e-]+ s/step \(measured over the first 5\)", printed.out, re.M)
    assert re.search(r"^step 6/6  eval_loss [\d.]+ .* eval_auroc ", printed.out, re.M)
    assert "total_flos" not in printed.out and "train_runtime" in printed.out
    bars = ("6/6 [", f"{val_chunks}/{val_chunks} [")  # the training bar, the evaluation bar (one chunk per batch)
    assert val_chunks >= progress.SHOW_EVALUATION_BAR_FROM_BATCHES
    assert [bar in printed.err for bar in bars] == [not disable_tqdm] * 2


@pytest.mark.parametrize("cache", [[], ["--no_cache"]], ids=["cached", "no_cache"])
def test_missing_and_unread_files_are_reported_once(demo_inputs, tmp_path, caplog, cache):
    caplog.set_level(logging.INFO)
    # Every name given must match some file (a typo is an error), so the missing pair is a file taken away.
    data_dir = tmp_path / "m4"
    shutil.copytree(demo_inputs[0], data_dir, ignore=shutil.ignore_patterns("arxiv_davinci.jsonl"))
    flags = ["--dry_run", "--cache_dir", str(tmp_path / "cache"), *cache]
    flags += ["--train_domains", "arxiv", "wikipedia", "--train_generators", "chatGPT", "davinci", "flant5"]
    for run in ("first", "second"):  # the second run reads the cache entry the first one wrote
        caplog.clear()
        assert train.main(tiny_train_args((data_dir, *demo_inputs[1:]), tmp_path / run, *flags)) == 0
        messages = [record.getMessage() for record in caplog.records]
        missing = [m for m in messages if m.startswith("No M4 file")]
        assert missing == ["No M4 file for 1 requested domain/generator pair: arxiv_davinci"], run
        unread = [m for m in messages if m.startswith("Not reading")]
        if run == "first" or cache:
            assert len(unread) == 1 and unread[0].startswith("Not reading 6 files in "), run
            assert "reddit_chatGPT.jsonl (domain reddit not in --train_domains)" in unread[0]
            assert "arxiv_dolly2.jsonl (generator dolly not in --train_generators)" in unread[0]


def test_small_inputs_show_no_progress_bar(demo_run, tmp_path, capfd):
    path = write_jsonl(tmp_path / "one.jsonl", [{"id": "a", "text": "moreover the city water system"}])
    assert predict.main(["--model_path", str(demo_run), "--input", str(path)]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out)["id"] == "a"
    assert "Chunking" not in captured.err and "Predicting" not in captured.err and "%|" not in captured.err


# ----------------------------------------------------------------------------------------------- predict.py


def test_report_says_where_the_threshold_came_from(demo_run, tmp_path):
    m4_dir = demo_run / "demo_inputs" / "m4"
    trained = (demo_run / "report.md").read_text()
    assert "chosen on these documents" in trained and "optimistic" in trained
    common = ["--model_path", str(demo_run), "--input", str(m4_dir), "--eval", "--domains", "arxiv"]
    assert predict.main([*common, "--report_dir", str(tmp_path / "saved")]) == 0
    saved = (tmp_path / "saved" / "report.md").read_text()
    assert "chosen on the training run's validation documents" in saved and "applied here unchanged" in saved
    assert "optimistic" not in saved
    assert predict.main([*common, "--threshold", "0.3", "--report_dir", str(tmp_path / "given")]) == 0
    given = (tmp_path / "given" / "report.md").read_text()
    assert "**0.3000**" in given and "given with --threshold" in given and "optimistic" not in given
    metrics = json.loads((tmp_path / "given" / "metrics.json").read_text())
    assert metrics["threshold"]["chosen_on"] == "the command line (--threshold)"


def test_baseline_train_is_read_on_its_own(demo_run, tmp_path, caplog):
    """--domains/--generators select --input only: the baseline is fitted on every document the training run's
    domains and generators give in the --baseline_train directory."""
    caplog.set_level(logging.INFO)
    m4_dir = demo_run / "demo_inputs" / "m4"
    argv = ["--model_path", str(demo_run), "--input", str(m4_dir), "--eval", "--report_dir", str(tmp_path / "r")]
    argv += ["--domains", "arxiv", "--generators", "flant5", "--baseline_train", str(m4_dir)]
    assert predict.main(argv) == 0
    fitted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TF-IDF baseline fitted on")]
    # 3 domains x 4 generator files of 30 rows: 30 human texts per domain (the same in each of its files) and
    # 360 machine texts, one of them empty; less what --input scores: arxiv's 30 human and 30 flant5 texts.
    expected = 3 * 30 + 12 * 30 - 1 - (30 + 30)
    assert len(fitted) == 1 and fitted[0].startswith(f"TF-IDF baseline fitted on {expected} documents (")
    assert "--baseline_train" in caplog.text and "removed 60 documents also in --input" in caplog.text
    scored = read_jsonl(tmp_path / "r" / "predictions.jsonl")
    assert {row["domain"] for row in scored} == {"arxiv"}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"text": "tbh lol", "label": 0}, {"text": "i guess", "label": 0}], "needs human and machine documents"),
        (
            [{"text": "tbh lol", "label": 0}, {"text": "furthermore"}],
            "every document needs a label (0/1 or human/machine); none for ids [2]",
        ),
    ],
    ids=["one_label", "unlabelled"],
)
def test_bad_baseline_train_stops_before_any_scoring(demo_run, tmp_path, capsys, monkeypatch, rows, message):
    def no_scoring(*args, **kwargs):
        raise AssertionError("the model ran before --baseline_train was checked")

    monkeypatch.setattr(predict, "score_documents", no_scoring)
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    report_dir = tmp_path / "r"
    argv = ["--model_path", str(demo_run), "--input", str(demo_run / "demo_inputs" / "m4" / "arxiv_davinci.jsonl")]
    argv += ["--eval", "--report_dir", str(report_dir), "--baseline_train", str(bad)]
    assert predict.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: --baseline_train {bad}:") and message in error
    assert not report_dir.exists()


# ----------------------------------------------------------------------------------------------- docs


def test_readme_shows_a_picture_the_demo_made(demo_run):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(readme.splitlines()[:40])
    picture = re.search(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", first_screen)
    assert picture, "no picture on the README's first screen"
    image = (ROOT / picture.group(1)).read_bytes()
    made = (demo_run / "roc.png").read_bytes()
    assert image[:8] == made[:8] == b"\x89PNG\r\n\x1a\n"
    assert image[16:24] == made[16:24]  # the same width and height: the demo's own roc.png
    assert "cp demo_output/roc.png " + picture.group(1) in readme


# ----------------------------------------------------------------------------------------------- --help


def help_parsers():
    prepare = prepare_data.prepare_parser()
    (commands,) = [a for a in prepare._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        "train.py": (train_parser(), TRAIN_GROUPS),
        "predict.py": (CommandLineParser([predict.PredictArguments], prog="predict.py"), [predict.PredictArguments]),
        **{
            f"prepare_data.py {name}": (commands.choices[name], [dataclass_type])
            for name, (dataclass_type, _) in prepare_data.PREPARE_COMMANDS.items()
        },
    }


@pytest.mark.parametrize("name", list(help_parsers()))
def test_help_shows_every_default(name):
    """Every setting of every tool is listed by --help with its default, as the parser holds it."""
    parser, dataclass_types = help_parsers()[name]
    text = "".join(parser.format_help().split())  # without whitespace: argparse wraps inside long paths
    names = {f.name for dataclass_type in dataclass_types for f in fields(dataclass_type) if f.init}
    shown = set()
    for action in parser._actions:
        if action.dest not in names or not action.option_strings or "==SUPPRESS==" in (action.help, action.default):
            continue  # not a setting, or another spelling of one (`--use_wandb` for `--report_to wandb`)
        if isinstance(action, argparse._StoreFalseAction):  # the `--no_X` complement of a switch that is on
            continue
        shown_default = "" if "default" in action.help else f" (default: {action.default})"  # once: in the help
        expected = "".join(f"{action.help % {}}{shown_default}".split())  # argparse's %% is %
        assert expected in text, f"{name}: {action.option_strings[0]}"
        shown.add(action.dest)
    assert shown == names  # every setting
