"""The field cases: every bad input, setting or fault gives a one-line `error:` (exit 2; 3 for a failed training)
naming the file:line or the flag, or a counted skip; nothing already written is replaced; no partial output ever
looks finished. One row per case; each checks the exit code, the message, that no traceback was printed, exact
skip counts, and for data-loss cases that the files which must not change are byte-identical.

Permission cases run as root without DAC override (capsh), or directly when not root; full-disk cases run in a
private mount namespace on a small tmpfs. Both skip with the reason where the machine cannot do that.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import lzma
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import huggingface_hub
import pytest
from conftest import ROOT, tiny_train_args, write_jsonl
from transformers import TrainerCallback

import chunking
import predict
import prepare_data
import train
from m4_training import data_cache, run_control, serving, summarize_runs
from m4_training.cli import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_TRAINING, EXIT_USAGE, UserError, run_cli
from m4_training.scoring import load_detector
from m4_training.serving import AppArguments
from m4_training.train_args import parse_train_args
from predict import parse_predict_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = (
    "river bridge honey tide glacier chess jazz soil train reef wind solar quantum garden protein market forest "
    "desert ocean vaccine copper lantern meadow harbor violin canyon"
).split()
# One line of each kind that parses as JSON only partly or not at all, with the skip reason it must get.
NESTED = "[" * 100_000 + "]" * 100_000
LONG_INTEGER = "7" * 5_000
BAD_M4_LINES = {
    "too_deeply_nested": '{"human_text": ' + NESTED + ', "machine_text": "x"}',
    "integer_too_long": '{"human_text": "some human words", "machine_text": "machine words", "source_ID": '
    + LONG_INTEGER
    + "}",
    "lone_surrogate": '{"human_text": "half of a pair \\ud800 here", "machine_text": "the other text is fine"}',
}
BAD_TEXT_LINES = {
    "too_deeply_nested": '{"text": ' + NESTED + "}",
    "integer_too_long": '{"text": "an ordinary post about the weather today", "id": ' + LONG_INTEGER + "}",
    "lone_surrogate": '{"text": "a post with half of a pair \\udc00 in it"}',
}


def words(seed: object, n: int = 14) -> str:
    rng = random.Random(str(seed))
    return " ".join(rng.choice(WORDS) for _ in range(n))


def m4_rows(n: int, tag: str = "") -> list[dict]:
    return [
        {"human_text": f"honestly {words((tag, 'h', i))}", "machine_text": f"furthermore {words((tag, 'm', i))}"}
        for i in range(n)
    ]


def posts(n: int, tag: str = "", **extra) -> list[dict]:
    return [{"text": f"lol {words((tag, 'p', i))}", **extra} for i in range(n)]


def reddit_dump_rows(n: int) -> list[dict]:
    """Rows prepare_data.py reddit keeps: long enough, before the cut-off, with an id."""
    return [
        {"id": f"p{i}", "body": f"tbh {words(('dump', i), 20)}", "created_utc": 1_500_000_000 + i} for i in range(n)
    ]


def lines_file(path: Path, good: list[dict], bad: dict[str, str]) -> tuple[Path, dict[str, int]]:
    """Two good rows, then the bad lines, then the rest; returns the file and each reason's line number."""
    rows = [*good[:2], *bad.values(), *good[2:]]
    write_jsonl(path, rows)
    return path, {reason: 3 + k for k, reason in enumerate(bad)}


class Outcome:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err
        assert "Traceback" not in err, err[-3000:]
        lines = [line[line.index("error: ") :] for line in err.replace("\r", "\n").splitlines() if "error: " in line]
        assert len(lines) <= 1, lines
        self.error = lines[0] if lines else None

    def expect_error(self, code: int, *fragments: str) -> None:
        assert self.code == code, (self.code, self.err[-2000:])
        assert self.error is not None, self.err[-2000:]
        for fragment in fragments:
            assert fragment in self.error, (fragment, self.error)


def run(main, argv: list[str], capsys) -> Outcome:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def small_selection(data_dir, reddit_file) -> list:
    """One domain and generator of the test data, stratified with a 0.3 validation share."""
    return ["--data_dir", data_dir, "--reddit_file", reddit_file, "--train_domains", "arxiv",
            "--train_generators", "chatgpt", "--stratified_split", "--validation_split", "0.3"]  # fmt: skip


def dry_run(model_dir, data_dir, reddit_file, output_dir, *extra) -> list[str]:
    window = ["--max_length", "64", "--chunk_overlap", "8"]
    return ["--model", model_dir, *small_selection(data_dir, reddit_file), *window,
            "--output_dir", output_dir, "--dry_run", "--no_cache", *extra]  # fmt: skip


def snapshot(*paths: Path) -> dict[str, bytes]:
    """Every file under the paths, by path, with its bytes (to show that nothing changed)."""
    files = {}
    for path in paths:
        for item in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            files[str(item)] = item.read_bytes()
    return files


@pytest.fixture
def m4_data(tmp_path):
    data_dir = tmp_path / "m4"
    write_jsonl(data_dir / "arxiv_chatGPT.jsonl", m4_rows(12))
    reddit = write_jsonl(tmp_path / "reddit.jsonl", posts(8))
    return data_dir, reddit


# ----------------------------------------------------------------------------------------------- rows


def test_unparseable_rows_are_counted_skips_in_train(tiny_model_dir, tmp_path, capsys, caplog):
    m4_file, m4_lines = lines_file(tmp_path / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12), BAD_M4_LINES)
    reddit, reddit_lines = lines_file(tmp_path / "reddit.jsonl", posts(8), BAD_TEXT_LINES)
    with caplog.at_level(logging.WARNING):
        outcome = run(train.main, dry_run(tiny_model_dir, m4_file.parent, reddit, tmp_path / "out"), capsys)
    assert outcome.code == 0 and outcome.error is None
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    files = {entry["path"]: entry for entry in report["files"]}
    expected = {"integer_too_long": 1, "lone_surrogate": 1, "too_deeply_nested": 1}
    assert files[str(m4_file)]["skipped"] == expected and files[str(m4_file)]["used"] == 12
    assert files[str(reddit)]["skipped"] == expected and files[str(reddit)]["used"] == 8
    for path, lines in ((m4_file, m4_lines), (reddit, reddit_lines)):
        for reason, line in lines.items():
            assert f"{path}:{line}: skipped ({reason})" in caplog.text
            assert files[str(path)]["skipped_lines"][reason] == [line]


def test_unparseable_rows_are_counted_skips_in_predict(demo_run, tmp_path, capsys, caplog):
    path, lines = lines_file(tmp_path / "texts.jsonl", posts(5), BAD_TEXT_LINES)
    output = tmp_path / "predictions.jsonl"
    with caplog.at_level(logging.WARNING):
        outcome = run(predict.main, ["--model_path", demo_run, "--input", path, "--output", output], capsys)
    assert outcome.code == 0 and outcome.error is None
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 6, 7, 8]  # line numbers of the good rows
    assert "3 rows skipped: {'too_deeply_nested': 1, 'integer_too_long': 1, 'lone_surrogate': 1}" in caplog.text
    for reason, line in lines.items():
        assert f"{path}:{line}: skipped ({reason})" in caplog.text


def test_unparseable_rows_are_counted_skips_in_prepare_data(tmp_path, capsys, caplog):
    raw, m4_lines = lines_file(tmp_path / "raw" / "arxiv_chatGPT.jsonl", m4_rows(6), BAD_M4_LINES)
    dump, dump_lines = lines_file(tmp_path / "dump.jsonl", reddit_dump_rows(6), BAD_TEXT_LINES)
    with caplog.at_level(logging.WARNING):
        m4 = run(
            prepare_data.main,
            ["m4", "--input_dir", raw.parent, "--output_dir", tmp_path / "clean", "--min_chars", "10"],
            capsys,
        )
        reddit = run(prepare_data.main, ["reddit", "--input", dump, "--output", tmp_path / "posts.jsonl"], capsys)
    assert m4.code == 0 and reddit.code == 0
    expected = {"integer_too_long": 1, "lone_surrogate": 1, "too_deeply_nested": 1}
    m4_table = json.loads((tmp_path / "clean" / "prepare_report.json").read_text())["files"][0]
    assert (m4_table["rows"], m4_table["kept"], m4_table["dropped"]) == (9, 6, expected)
    reddit_table = json.loads((tmp_path / "posts.jsonl.report.json").read_text())["files"][0]
    assert (reddit_table["rows"], reddit_table["kept"], reddit_table["dropped"]) == (9, 6, expected)
    assert len((tmp_path / "clean" / "arxiv_chatGPT.jsonl").read_text().splitlines()) == 6
    for path, lines in ((raw, m4_lines), (dump, dump_lines)):
        for reason, line in lines.items():
            assert f"{path}:{line}: skipped ({reason})" in caplog.text


# ----------------------------------------------------------------------------------------------- files


def gzip_file(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return path


def _m4_entry_is_a_directory(tmp, model, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    write_jsonl(tmp / "m4" / "arxiv_davinci.jsonl" / "inner.jsonl", m4_rows(2))  # a directory with a .jsonl name
    argv = dry_run(model, tmp / "m4", "none", tmp / "out", "--train_generators", "chatgpt", "davinci")
    return train.main, argv, [f"{tmp / 'm4' / 'arxiv_davinci.jsonl'}: is a directory, not a file"]


def _m4_entry_is_a_symlink_loop(tmp, model, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    loop = tmp / "m4" / "arxiv_davinci.jsonl"
    os.symlink(loop, loop)
    argv = dry_run(model, tmp / "m4", "none", tmp / "out", "--train_generators", "chatgpt", "davinci")
    return train.main, argv, [f"{loop}: cannot be read (Too many levels of symbolic links)"]


def _m4_file_is_gzip(tmp, model, demo_run):
    path = gzip_file(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    return train.main, dry_run(model, tmp / "m4", "none", tmp / "out"), [f"{path}: compressed (gzip): gunzip it first"]


def _reddit_file_is_gzip(tmp, model, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    reddit = gzip_file(tmp / "reddit.jsonl", posts(8))
    return train.main, dry_run(model, tmp / "m4", reddit, tmp / "out"), [f"{reddit}: compressed (gzip): gunzip it"]


def _reddit_file_is_a_dangling_link(tmp, model, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    reddit = tmp / "reddit.jsonl"
    os.symlink(tmp / "gone.jsonl", reddit)
    argv = dry_run(model, tmp / "m4", reddit, tmp / "out")
    return train.main, argv, [f"{reddit}: cannot be read (No such file or directory)"]


def _predict_input_is_gzip(tmp, model, demo_run):
    path = gzip_file(tmp / "texts.jsonl", posts(3))
    return predict.main, ["--model_path", demo_run, "--input", path], [f"{path}: compressed (gzip): gunzip it first"]


def _predict_input_is_xz(tmp, model, demo_run):
    path = tmp / "texts.txt"
    path.write_bytes(lzma.compress(b"a plain text document\n"))
    return predict.main, ["--model_path", demo_run, "--input", path], [f"{path}: compressed (xz): unxz it first"]


def _prepare_reddit_dump_is_gzip(tmp, model, demo_run):
    dump = gzip_file(tmp / "dump.jsonl", reddit_dump_rows(4))
    argv = ["reddit", "--input", dump, "--output", tmp / "posts.jsonl"]
    return prepare_data.main, argv, [f"{dump}: compressed (gzip): gunzip it first"]


def _prepare_m4_input_is_gzip(tmp, model, demo_run):
    raw = gzip_file(tmp / "raw" / "arxiv_chatGPT.jsonl", m4_rows(4))
    argv = ["m4", "--input_dir", raw.parent, "--output_dir", tmp / "clean"]
    return prepare_data.main, argv, [f"{raw}: compressed (gzip): gunzip it first"]


def _prepare_m4_entry_is_a_directory(tmp, model, demo_run):
    write_jsonl(tmp / "raw" / "arxiv_chatGPT.jsonl", m4_rows(4))
    (tmp / "raw" / "arxiv_flant5.jsonl").mkdir()
    argv = ["m4", "--input_dir", tmp / "raw", "--output_dir", tmp / "clean"]
    return prepare_data.main, argv, [f"{tmp / 'raw' / 'arxiv_flant5.jsonl'}: is a directory, not a file"]


def _test_data_is_gzip(tmp, model, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    test = gzip_file(tmp / "test.jsonl", posts(4, label=0))
    argv = dry_run(model, tmp / "m4", "none", tmp / "out", "--test_data", test)
    return train.main, argv, [f"--test_data {test}: compressed (gzip): gunzip it first"]


def _test_data_m4_entry_is_a_directory(tmp, model, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    (tmp / "test" / "arxiv_davinci.jsonl").mkdir(parents=True)
    argv = dry_run(model, tmp / "m4", "none", tmp / "out", "--test_data", tmp / "test")
    return train.main, argv, [f"--test_data {tmp / 'test'}: {tmp / 'test' / 'arxiv_davinci.jsonl'}: is a directory"]


def _baseline_train_is_gzip(tmp, model, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3, label=0))
    fit_on = gzip_file(tmp / "fit.jsonl", posts(4, label=0))
    argv = ["--model_path", demo_run, "--input", texts, "--eval", "--report_dir", tmp / "r", "--baseline_train", fit_on]
    return predict.main, argv, [f"--baseline_train {fit_on}: compressed (gzip): gunzip it first"]


def _second_model_path_is_a_file(tmp, model, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3))
    argv = ["--model_path", demo_run, texts, "--input", texts]
    return predict.main, argv, [f"--model_path {texts} is a file; pass a model directory or a hub id"]


@pytest.mark.parametrize(
    "case",
    [
        _test_data_is_gzip,
        _test_data_m4_entry_is_a_directory,
        _baseline_train_is_gzip,
        _second_model_path_is_a_file,
        _m4_entry_is_a_directory,
        _m4_entry_is_a_symlink_loop,
        _m4_file_is_gzip,
        _reddit_file_is_gzip,
        _reddit_file_is_a_dangling_link,
        _predict_input_is_gzip,
        _predict_input_is_xz,
        _prepare_reddit_dump_is_gzip,
        _prepare_m4_input_is_gzip,
        _prepare_m4_entry_is_a_directory,
    ],
    ids=lambda case: case.__name__.strip("_"),
)
def test_unreadable_input_files_are_one_line_errors(case, tiny_model_dir, demo_run, tmp_path, capsys):
    main, argv, fragments = case(tmp_path, tiny_model_dir, demo_run)
    before = {p for p in tmp_path.rglob("*")}
    run(main, argv, capsys).expect_error(EXIT_USAGE, *fragments)
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written: no output, no half-made directory


def test_gzip_on_stdin_is_a_one_line_error(demo_run, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(gzip.compress(b'{"text": "hello there"}\n')))
    monkeypatch.setattr(sys, "stdin", stdin)
    outcome = run(predict.main, ["--model_path", demo_run, "--input", "-"], capsys)
    outcome.expect_error(EXIT_USAGE, "<stdin>: compressed (gzip): gunzip it first")
    assert outcome.out == ""


# ----------------------------------------------------------------------------------------------- Reddit files


def test_reddit_csv_with_human_and_machine_labels_is_read(tiny_model_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    reddit = tmp_path / "reddit.csv"
    body = [f"{i},tbh {words(('csv', i))},{label}" for i, label in enumerate(["human", "machine", "", "Human", "x"])]
    reddit.write_text("id,body,label\n" + "\n".join(body) + "\n", encoding="utf-8")
    outcome = run(train.main, dry_run(tiny_model_dir, tmp_path / "m4", reddit, tmp_path / "out"), capsys)
    assert outcome.code == 0
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    entry = next(e for e in report["files"] if e["path"] == str(reddit))
    assert (entry["rows"], entry["used"], entry["skipped"]) == (5, 4, {"label_invalid": 1})
    rows = [json.loads(line) for line in (tmp_path / "out" / "splits.jsonl").read_text().splitlines()]
    labels = {s["line"]: row["label"] for row in rows for s in row["sources"] if s["file"] == str(reddit)}
    assert labels == {2: 0, 3: 1, 4: 0, 5: 0}  # the CSV's records start on line 2


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("id,content\n1,hello\n", ["reddit.csv: no text column (text, body, selftext) in the CSV header"]),
        ('text\n""\n"   "\n', ["reddit.csv: no usable post in 2 rows", "text_empty", "--reddit_file none"]),
    ],
    ids=["csv_without_text_column", "no_usable_row"],
)
def test_reddit_file_without_usable_rows_is_an_error(tiny_model_dir, tmp_path, capsys, content, fragments):
    write_jsonl(tmp_path / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    reddit = tmp_path / "reddit.csv"
    reddit.write_text(content, encoding="utf-8")
    outcome = run(train.main, dry_run(tiny_model_dir, tmp_path / "m4", reddit, tmp_path / "out"), capsys)
    outcome.expect_error(EXIT_USAGE, *fragments)
    assert not (tmp_path / "out" / "data_report.json").exists()


# ----------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (
            ["--train_domains", "arxiv", "wikipeda"],
            [
                "--train_domains wikipeda matches no file (did you mean wikipedia?)",
                "domains there: arxiv reddit wikipedia",
            ],
        ),
        (
            ["--train_generators", "chatgtp", "flant5"],
            [
                "--train_generators chatgtp matches no file (did you mean chatgpt?)",
                "generators there: chatgpt davinci dolly flant5",
            ],
        ),
        (
            # The held-out domain's files are loaded even when --train_domains leaves it out: its name is checked.
            ["--stratified_split", "false", "--val_domain", "wikipeda"],
            ["--val_domain wikipeda matches no file (did you mean wikipedia?)"],
        ),
        (
            ["--stratified_split", "false", "--val_generator", "flant55"],
            ["--val_generator flant55 matches no file (did you mean flant5?)"],
        ),
        (
            ["--test_data", "DATA_DIR", "--test_domains", "arxiv", "wikipeda"],
            ["--test_domains wikipeda matches no file (did you mean wikipedia?)", "--test_data"],
        ),
        (
            ["--test_data", "DATA_DIR", "--test_generators", "davinchi"],
            ["--test_generators davinchi matches no file (did you mean davinci?)"],
        ),
    ],
    ids=[
        "domain_typo",
        "generator_typo",
        "val_domain_typo",
        "val_generator_typo",
        "test_domain_typo",
        "test_generator_typo",
    ],
)
def test_requested_name_without_files_is_an_error(demo_inputs, tmp_path, capsys, flags, fragments):
    data_dir, _, model_dir = demo_inputs
    flags = [str(data_dir) if flag == "DATA_DIR" else flag for flag in flags]
    argv = [*dry_run(model_dir, data_dir, "none", tmp_path / "out"), *flags]
    run(train.main, argv, capsys).expect_error(EXIT_USAGE, str(data_dir), *fragments)
    assert not (tmp_path / "out").exists()


def test_predict_names_given_must_match_but_the_training_runs_need_not(demo_inputs, demo_run, tmp_path, capsys):
    data_dir = demo_inputs[0]
    argv = ["--model_path", demo_run, "--input", data_dir, "--generators", "chatgpt", "--domains", "wikipeda"]
    run(predict.main, argv, capsys).expect_error(EXIT_USAGE, "--domains wikipeda matches no file (did you mean")
    # The training run's lists are a default: a directory with only some of its files is scored.
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(data_dir / "arxiv_chatGPT.jsonl", partial / "arxiv_chatGPT.jsonl")
    outcome = run(predict.main, ["--model_path", demo_run, "--input", partial], capsys)
    assert outcome.code == 0 and {json.loads(line)["domain"] for line in outcome.out.splitlines()} == {"arxiv"}


def test_default_names_need_not_all_be_present(demo_inputs, tmp_path, capsys, caplog):
    """The full M4 lists are defaults: a directory with some of them trains on those, naming the missing pairs."""
    data_dir, reddit, model_dir = demo_inputs
    argv = [
        "--model",
        model_dir,
        "--data_dir",
        data_dir,
        "--reddit_file",
        reddit,
        "--max_length",
        "64",
        "--chunk_overlap",
        "8",
        "--output_dir",
        tmp_path / "out",
        "--dry_run",
        "--no_cache",
    ]
    with caplog.at_level(logging.WARNING):
        assert run(train.main, argv, capsys).code == 0
    assert "No M4 file for 13 requested domain/generator pairs" in caplog.text  # 5 x 5 defaults, 12 files match


# ----------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
        (["--eval_batch_size", "0"], "--eval_batch_size must be at least 1, got 0"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be at least 1, got 0"),
        (["--logging_steps", "0"], "--logging_steps must be positive, got 0"),
        (["--seed", "-1"], "--seed must be at least 0, got -1"),
        (["--epochs", "nan"], "--epochs must be a positive number (or set --max_steps), got nan"),
        (["--epochs", "0"], "--epochs must be a positive number (or set --max_steps), got 0"),
        (["--num_proc", "-1"], "--num_proc must be at least 1, got -1"),
        (
            ["--report_to", "tensorbored"],
            "--report_to tensorbored: not a tracker transformers knows (did you mean tensorboard?); use none or any of",
        ),
        (["--max_steps", "x"], "argument --max_steps/--max-steps: invalid int value: 'x'"),
    ],
)
def test_bad_train_settings_stop_before_any_work(demo_inputs, tmp_path, capsys, flags, fragment):
    argv = tiny_train_args(demo_inputs, tmp_path / "out", *flags)
    run(train.main, argv, capsys).expect_error(EXIT_USAGE, fragment)
    assert not (tmp_path / "out").exists()


def test_max_steps_replaces_epochs_and_num_proc_is_capped(demo_inputs, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        config = parse_train_args(
            tiny_train_args(demo_inputs, tmp_path, "--epochs", "0", "--max_steps", "3", "--num_proc", "1000")
        )
    assert config.training.max_steps == 3 and config.data.num_proc == os.cpu_count()
    assert f"--num_proc 1000 is more than the {os.cpu_count()} CPUs here; using {os.cpu_count()}" in caplog.text


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
        (["--num_proc", "-1"], "--num_proc must be at least 1, got -1"),
        (["--threshold", "1.5"], "--threshold must be in [0, 1], got 1.5"),
        (["--max_length", "1"], "--max_length must be at least 2, got 1"),
        (
            ["--machine_label", "ai", "human"],
            "--machine_label takes one name for every model or one per --model_path (1), got 2",
        ),
    ],
)
def test_bad_predict_settings(demo_run, tmp_path, capsys, flags, fragment):
    argv = ["--model_path", demo_run, "--input", tmp_path / "x.jsonl", "--output", tmp_path / "out.jsonl", *flags]
    run(predict.main, argv, capsys).expect_error(EXIT_USAGE, fragment)
    assert not (tmp_path / "out.jsonl").exists()


def test_hub_settings_that_cannot_work_stop_before_any_data_is_read(demo_inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "out"
    argv = tiny_train_args(demo_inputs, out, "--push_to_hub", "--hub_model_id", "me/two words")
    run(train.main, argv, capsys).expect_error(
        EXIT_USAGE, "--push_to_hub: --hub_model_id me/two words is not a Hub repository name"
    )
    argv = tiny_train_args(demo_inputs, tmp_path / "a b", "--push_to_hub")
    run(train.main, argv, capsys).expect_error(
        EXIT_USAGE, "--output_dir a b is not a Hub repository name (the default repository name); set --hub_model_id"
    )

    def refused(repo_id, **kwargs):
        response = httpx.Response(403, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
        raise huggingface_hub.errors.HfHubHTTPError("403 Forbidden: no rights to create a model", response=response)

    monkeypatch.setattr(run_control, "create_repo", refused)
    prepared = []
    monkeypatch.setattr(data_cache, "prepare", lambda *args: prepared.append(args))
    argv = tiny_train_args(demo_inputs, out, "--push_to_hub", "--hub_model_id", "someone/else")
    run(train.main, argv, capsys).expect_error(
        EXIT_USAGE,
        "--push_to_hub: cannot create or reach the Hub repository someone/else (403 Forbidden",
        "check the token's write access and --hub_model_id",
    )
    assert prepared == [] and not out.exists()


# ----------------------------------------------------------------------------------------------- output paths


def _reddit_output_is_input(tmp, demo_run):
    dump = write_jsonl(tmp / "dump.jsonl", reddit_dump_rows(4))
    return prepare_data.main, ["reddit", "--input", dump, "--output", dump], [dump], [f"--output {dump} is --input"]


def _reddit_report_is_input(tmp, demo_run):
    dump = write_jsonl(tmp / "dump.jsonl", reddit_dump_rows(4))
    argv = ["reddit", "--input", dump, "--output", tmp / "posts.jsonl", "--report", dump]
    return prepare_data.main, argv, [dump], [f"--report {dump} is --input"]


def _reddit_report_is_output(tmp, demo_run):
    dump = write_jsonl(tmp / "dump.jsonl", reddit_dump_rows(4))
    argv = ["reddit", "--input", dump, "--output", tmp / "p.jsonl", "--report", tmp / "p.jsonl"]
    return prepare_data.main, argv, [dump], ["--output and --report are the same path"]


def _reddit_output_is_a_directory(tmp, demo_run):
    dump = write_jsonl(tmp / "dump.jsonl", reddit_dump_rows(4))
    (tmp / "posts").mkdir()
    argv = ["reddit", "--input", dump, "--output", tmp / "posts"]
    return prepare_data.main, argv, [dump], [f"--output {tmp / 'posts'} is a directory; give a file name"]


def _m4_output_inside_input(tmp, demo_run):
    write_jsonl(tmp / "raw" / "arxiv_chatGPT.jsonl", m4_rows(4))
    argv = ["m4", "--input_dir", tmp / "raw", "--output_dir", tmp / "raw" / "clean"]
    return prepare_data.main, argv, [tmp / "raw"], ["--output_dir", "is inside --input_dir"]


def _m4_input_inside_output(tmp, demo_run):
    write_jsonl(tmp / "data" / "raw" / "arxiv_chatGPT.jsonl", m4_rows(4))
    argv = ["m4", "--input_dir", tmp / "data" / "raw", "--output_dir", tmp / "data"]
    return prepare_data.main, argv, [tmp / "data"], ["--input_dir", "is inside --output_dir"]


def _m4_output_holds_other_files(tmp, demo_run):
    write_jsonl(tmp / "raw" / "arxiv_chatGPT.jsonl", m4_rows(4))
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("not from prepare_data.py")
    argv = ["m4", "--input_dir", tmp / "raw", "--output_dir", tmp / "mine"]
    return prepare_data.main, argv, [tmp / "raw", tmp / "mine"], ["holds files that prepare_data.py m4 did not write"]


def _predict_report_dir_is_the_model(tmp, demo_run):
    model = tmp / "model"
    shutil.copytree(demo_run, model, ignore=shutil.ignore_patterns("checkpoint-*", "demo_inputs"))
    texts = write_jsonl(tmp / "t.jsonl", posts(3, label=0))
    argv = ["--model_path", model, "--input", texts, "--eval", "--report_dir", model]
    return predict.main, argv, [model], [f"--report_dir {model} is --model_path"]


def _predict_report_dir_inside_the_model(tmp, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3, label=0))
    argv = ["--model_path", demo_run, "--input", texts, "--eval", "--report_dir", demo_run / "eval"]
    return predict.main, argv, [texts], [f"--report_dir {demo_run / 'eval'} is inside --model_path"]


def _predict_output_inside_the_model(tmp, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3))
    argv = ["--model_path", demo_run, "--input", texts, "--output", demo_run / "metrics.json"]
    return predict.main, argv, [texts], ["--output", "is inside --model_path"]


def _predict_output_is_the_input(tmp, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3))
    return predict.main, ["--model_path", demo_run, "--input", texts, "--output", texts], [texts], ["is --input"]


def _predict_output_is_a_directory(tmp, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3))
    argv = ["--model_path", demo_run, "--input", texts, "--output", tmp]
    return predict.main, argv, [texts], [f"--output {tmp} is a directory; give a file name"]


def _predict_output_is_a_report_file(tmp, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3, label=0))
    argv = [
        "--model_path",
        demo_run,
        "--input",
        texts,
        "--eval",
        "--report_dir",
        tmp / "ev",
        "--output",
        tmp / "ev" / "metrics.json",
    ]
    return predict.main, argv, [texts], ["metrics.json is a file that --eval writes"]


def _train_output_dir_is_the_data_dir(tmp, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    argv = dry_run(demo_run, tmp / "m4", "none", tmp / "m4")
    return train.main, argv, [tmp / "m4"], [f"--output_dir {tmp / 'm4'} is --data_dir"]


def _train_output_dir_inside_the_model(tmp, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    argv = dry_run(demo_run, tmp / "m4", "none", demo_run / "finetuned")
    return train.main, argv, [tmp / "m4"], ["is inside --model"]


def _train_output_dir_is_a_file(tmp, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    (tmp / "out").write_text("my notes")
    argv = dry_run(demo_run, tmp / "m4", "none", tmp / "out")
    return train.main, argv, [tmp / "out"], [f"--output_dir {tmp / 'out'} is a file, not a directory"]


def _model_copy(tmp: Path, demo_run: Path) -> Path:
    model = tmp / "model"
    shutil.copytree(demo_run, model, ignore=shutil.ignore_patterns("checkpoint-*", "demo_inputs"))
    return model


def _predict_report_dir_inside_the_second_model(tmp, demo_run):
    model = _model_copy(tmp, demo_run)
    texts = write_jsonl(tmp / "t.jsonl", posts(3, label=0))
    argv = ["--model_path", demo_run, model, "--input", texts, "--eval", "--report_dir", model / "eval"]
    return predict.main, argv, [model, texts], [f"--report_dir {model / 'eval'} is inside --model_path {model}"]


def _predict_output_is_a_file_of_the_second_model(tmp, demo_run):
    model = _model_copy(tmp, demo_run)
    texts = write_jsonl(tmp / "t.jsonl", posts(3))
    argv = ["--model_path", demo_run, model, "--input", texts, "--output", model / "metrics.json"]
    return predict.main, argv, [model, texts], [f"--output {model / 'metrics.json'} is inside --model_path {model}"]


def _predict_output_is_the_baseline_train(tmp, demo_run):
    texts = write_jsonl(tmp / "t.jsonl", posts(3, label=0))
    fit_on = write_jsonl(tmp / "fit.jsonl", posts(3, label=0))
    argv = ["--model_path", demo_run, "--input", texts, "--eval", "--baseline_train", fit_on, "--output", fit_on]
    return predict.main, argv, [texts, fit_on], [f"--output {fit_on} is --baseline_train"]


def _train_output_dir_inside_a_test_data_dir(tmp, demo_run):
    write_jsonl(tmp / "m4" / "arxiv_chatGPT.jsonl", m4_rows(12))
    write_jsonl(tmp / "test" / "arxiv_davinci.jsonl", m4_rows(6, "test"))
    argv = dry_run(demo_run, tmp / "m4", "none", tmp / "test" / "run", "--test_data", tmp / "test")
    return train.main, argv, [tmp / "m4", tmp / "test"], [f"--output_dir {tmp / 'test' / 'run'} is inside --test_data"]


def _summarize_output_inside_a_run(tmp, demo_run):
    argv = ["--runs", demo_run, "--output", demo_run / "summary.md"]
    return summarize_runs.main, argv, [], [f"--output {demo_run / 'summary.md'} is inside --runs {demo_run}"]


def _summarize_output_is_a_directory(tmp, demo_run):
    (tmp / "tables").mkdir()
    argv = ["--runs", demo_run, "--output", tmp / "tables"]
    return summarize_runs.main, argv, [], [f"--output {tmp / 'tables'} is a directory; give a file name"]


@pytest.mark.parametrize(
    "case",
    [
        _reddit_output_is_input,
        _reddit_report_is_input,
        _reddit_report_is_output,
        _reddit_output_is_a_directory,
        _m4_output_inside_input,
        _m4_input_inside_output,
        _m4_output_holds_other_files,
        _predict_report_dir_is_the_model,
        _predict_report_dir_inside_the_model,
        _predict_output_inside_the_model,
        _predict_output_is_the_input,
        _predict_output_is_a_directory,
        _predict_output_is_a_report_file,
        _train_output_dir_is_the_data_dir,
        _train_output_dir_inside_the_model,
        _train_output_dir_is_a_file,
        _predict_report_dir_inside_the_second_model,
        _predict_output_is_a_file_of_the_second_model,
        _predict_output_is_the_baseline_train,
        _train_output_dir_inside_a_test_data_dir,
        _summarize_output_inside_a_run,
        _summarize_output_is_a_directory,
    ],
    ids=lambda case: case.__name__.strip("_"),
)
def test_outputs_never_replace_inputs_or_models(case, demo_run, tmp_path, capsys):
    main, argv, kept, fragments = case(tmp_path, demo_run)
    before = snapshot(*kept, demo_run)
    run(main, argv, capsys).expect_error(EXIT_USAGE, *fragments)
    assert snapshot(*kept, demo_run) == before


# ----------------------------------------------------------------------------------------------- app and summaries


@pytest.fixture
def app_service(demo_run):
    return serving.DetectorService(load_detector(demo_run), AppArguments(model_path=str(demo_run)))


def test_app_uploads_skip_and_refuse_rows_as_predict_does(app_service, demo_run, tmp_path, capsys):
    path, _ = lines_file(tmp_path / "texts.jsonl", posts(5), BAD_TEXT_LINES)
    rows, output, skipped = app_service.score_upload(path)
    assert skipped == {"too_deeply_nested": 1, "integer_too_long": 1, "lone_surrogate": 1}
    reference = tmp_path / "reference.jsonl"
    assert run(predict.main, ["--model_path", demo_run, "--input", path, "--output", reference], capsys).code == 0
    assert output.read_bytes() == reference.read_bytes() and [row["id"] for row in rows] == [1, 2, 6, 7, 8]
    packed = gzip_file(tmp_path / "upload" / "texts.jsonl", posts(3))
    with pytest.raises(UserError) as error:
        app_service.score_upload(packed)
    assert str(error.value) == "texts.jsonl: compressed (gzip): gunzip it first"  # the name the user knows


def test_app_texts_with_a_lone_surrogate_are_refused_or_skipped_without_a_fault(app_service):
    (page,) = app_service.score_page_texts(["a post with half of a pair \ud800 in it"])
    assert page.message == serving.LONE_SURROGATE_MESSAGE and page.prob_machine is None
    mixed, alone = app_service.score_requests(
        [["an ordinary post about the weather today", "half \udc00 pair"], ["\ud800"]]
    )
    assert [row["id"] for row in mixed[:1]] == [1] and mixed[1:] == [{"item": 2, "skipped": "lone_surrogate"}]
    assert alone == {"error": "request: no usable document in 1 row (skipped: {'lone_surrogate': 1})"}


def test_summarize_runs_refuses_unreadable_runs_and_leaves_its_own_output_out(demo_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text('{"threshold": {"value": 0.5}}')
    (broken / "training_config.json").write_text("{}")
    run(summarize_runs.main, ["--runs", demo_run, broken], capsys).expect_error(
        EXIT_USAGE, f"--runs {broken}: metrics.json or training_config.json lacks 'data_summary'"
    )
    (broken / "metrics.json").unlink()
    (broken / "metrics.json").mkdir()
    run(summarize_runs.main, ["--runs", broken], capsys).expect_error(
        EXIT_USAGE, f"{broken / 'metrics.json'}: cannot be read (Is a directory)"
    )
    summary = tmp_path / "summary.md"
    first = run(summarize_runs.main, ["--runs", demo_run, "--output", summary], capsys)
    assert first.code == 0 and summary.read_text() == first.out and demo_run.name in first.out
    # `--runs DIR/* --output DIR/summary.md` again: the glob now names the summary too, which is not a run.
    again = run(summarize_runs.main, ["--runs", demo_run, summary, "--output", summary], capsys)
    assert again.code == 0 and again.out == first.out == summary.read_text()
    other = run(summarize_runs.main, ["--runs", demo_run, summary, "--output", tmp_path / "other.md"], capsys)
    other.expect_error(EXIT_USAGE, f"--runs {summary}: not a directory (`DIR/*/` names only the directories in DIR)")


# ----------------------------------------------------------------------------------------------- lock


def hold_lock(output_dir: Path) -> subprocess.Popen:
    """A second process holding the output directory's lock, as a running train.py does."""
    code = "import sys, time; from m4_training import run_control\nwith run_control.lock_output_dir(sys.argv[1]): "
    code += "print('locked', flush=True); time.sleep(120)"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(output_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_into_one_output_dir_refuses_and_a_dead_holder_blocks_nothing(
    m4_data, tiny_model_dir, tmp_path, capsys
):
    output_dir = tmp_path / "out"
    holder = hold_lock(output_dir)
    try:
        (output_dir / "splits.jsonl").write_text("the first run's split\n")
        before = snapshot(output_dir)
        outcome = run(train.main, dry_run(tiny_model_dir, *m4_data, output_dir), capsys)
        outcome.expect_error(
            EXIT_USAGE,
            f"--output_dir {output_dir} is in use by another training run; wait for it to end or choose another "
            "--output_dir",
        )
        assert snapshot(output_dir) == before
    finally:
        holder.kill()  # as a crash would: the lock file stays behind, the kernel drops the lock
        holder.wait()
    assert (output_dir / run_control.LOCK_FILE).exists()
    assert run(train.main, dry_run(tiny_model_dir, *m4_data, output_dir), capsys).code == 0
    assert not (output_dir / run_control.LOCK_FILE).exists()  # released at the end
    assert (output_dir / "splits.jsonl").read_text() != "the first run's split\n"


# ----------------------------------------------------------------------------------------------- resume


def damage_checkpoints(output_dir: Path) -> tuple[Path, Path, Path]:
    """The demo run's checkpoints (oldest first); the newest truncated, and a newer partial one added."""
    older, newest = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    weights = newest / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(size // 2)
    partial = output_dir / f"checkpoint-{int(newest.name.split('-')[1]) + 10}"
    shutil.copytree(older, partial)
    (partial / "trainer_state.json").unlink()
    return older, newest, partial


def test_resume_auto_takes_the_newest_complete_checkpoint(demo_run, tmp_path, capsys, caplog):
    output_dir = tmp_path / "run"
    shutil.copytree(demo_run, output_dir)
    older, newest, partial = damage_checkpoints(output_dir)
    with caplog.at_level(logging.INFO):
        assert run_control.resolve_checkpoint("auto", str(output_dir)) == str(older)
    assert (
        f"passed over {partial.name} (no trainer_state.json: its save did not finish); {newest.name} "
        "(model.safetensors is truncated or damaged)"
    ) in caplog.text
    with pytest.raises(UserError, match=f"--resume_from_checkpoint {newest}: cannot resume from it"):
        run_control.resolve_checkpoint(str(newest), str(output_dir))
    with open(older / "optimizer.pt", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(UserError, match="no complete checkpoint-N directory in .*optimizer.pt is truncated"):
        run_control.resolve_checkpoint("auto", str(output_dir))


def test_demo_resumes_from_the_complete_checkpoint_after_a_damaged_one(demo_run, tmp_path, capsys, caplog):
    output_dir = tmp_path / "run"
    shutil.copytree(demo_run, output_dir)
    older, _, _ = damage_checkpoints(output_dir)
    (output_dir / "metrics.json").unlink()
    argv = ["--demo", "--output_dir", output_dir, "--epochs", "2", "--resume_from_checkpoint", "auto"]
    with caplog.at_level(logging.INFO):
        outcome = run(train.main, argv, capsys)
    assert outcome.code == 0, outcome.err[-2000:]
    assert f"Resuming from {older}" in caplog.text
    assert json.loads((output_dir / "metrics.json").read_text())["document"]["n"] > 0


class SignalAt(TrainerCallback):
    def __init__(self, step: int, number: int) -> None:
        self.step, self.number = step, number

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.number)


def test_sigterm_ends_with_one_line_naming_the_checkpoint(demo_inputs, tmp_path, capsys, monkeypatch):
    build_trainer = train.build_trainer

    def with_signal(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.add_callback(SignalAt(6, signal.SIGTERM))
        return trainer

    monkeypatch.setattr(train, "build_trainer", with_signal)
    argv = tiny_train_args(demo_inputs, tmp_path / "out", "--eval_steps", "4", "--no_cache")
    outcome = run(train.main, argv, capsys)
    outcome.expect_error(
        128 + signal.SIGTERM,
        "interrupted (SIGTERM); the newest complete checkpoint is "
        f"{tmp_path / 'out' / 'checkpoint-4'}; resume with: python train.py ",
    )
    resume = shlex.split(outcome.error.split("resume with: ")[1])[2:]
    assert resume[-2:] == ["--resume_from_checkpoint", "auto"] and resume[:-2] == [str(a) for a in argv]
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert not (tmp_path / "out" / run_control.LOCK_FILE).exists()


def test_ctrl_c_on_demo_names_the_resume_command_that_works(tmp_path):
    """A real process: SIGINT after the first checkpoint, then the printed command finishes the run."""
    output_dir = tmp_path / "demo"
    argv = ["--demo", "--output_dir", str(output_dir), "--eval_steps", "3", "--epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "train.py", *argv], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while not list(output_dir.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1]
    outcome = Outcome(process.returncode, "", err)
    outcome.expect_error(
        EXIT_INTERRUPTED,
        f"interrupted (SIGINT); the newest complete checkpoint is {output_dir}/checkpoint-",
        "resume with: python train.py --demo",
    )
    assert not (output_dir / "metrics.json").exists()
    command = shlex.split(outcome.error.split("resume with: ")[1])
    assert command[:2] == ["python", "train.py"]
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr and (output_dir / "metrics.json").is_file()


def test_failed_save_names_the_path_and_the_free_space(demo_inputs, tmp_path, capsys, monkeypatch):
    output_dir = tmp_path / "out"
    save_model = train.WeightedTrainer.save_model

    def full_disk_at_the_end(self, path=None, _internal_call=False):
        if Path(path) == output_dir:  # the checkpoints fit, the final model does not
            raise OSError(errno.ENOSPC, "No space left on device", str(output_dir / "model.safetensors"))
        save_model(self, path, _internal_call)

    monkeypatch.setattr(train.WeightedTrainer, "save_model", full_disk_at_the_end)
    outcome = run(train.main, tiny_train_args(demo_inputs, output_dir, "--no_cache"), capsys)
    outcome.expect_error(
        EXIT_TRAINING,
        f"could not write {output_dir / 'model.safetensors'} (No space left on device); ",
        f" free on that disk; the newest complete checkpoint is {output_dir / 'checkpoint-'}",
    )
    assert not (output_dir / "metrics.json").exists()


def test_files_get_the_umask_permissions(demo_run):
    mode = 0o666 & ~(current_umask := os.umask(0))
    os.umask(current_umask)
    written = [p for p in demo_run.rglob("*") if p.is_file() and "demo_inputs" not in p.parts]
    assert {
        p.relative_to(demo_run).as_posix(): oct(p.stat().st_mode & 0o777)
        for p in written
        if p.stat().st_mode & 0o777 != mode
    } == {}
    assert any(p.name == "model.safetensors" and p.parent.name.startswith("checkpoint-") for p in written)


# ----------------------------------------------------------------------------------------------- cache


def cache_settings(m4_data, cache_dir: Path, *extra: str):
    data_dir, reddit = m4_data
    argv = [*small_selection(data_dir, reddit), "--max_length", "32", "--chunk_overlap", "4", "--cache_dir", cache_dir,
            *extra]  # fmt: skip
    return train.data_settings(parse_train_args([str(a) for a in argv]))


def chunk_ids(prepared) -> list:
    return [prepared.train_chunks["input_ids"][:], prepared.val_chunks["input_ids"][:]]


def test_damaged_cache_entry_is_rebuilt_with_a_warning(m4_data, tiny_tokenizer, tmp_path, caplog):
    settings = cache_settings(m4_data, tmp_path / "cache")
    fresh = chunk_ids(data_cache.prepare(settings, tiny_tokenizer))
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    (arrow,) = entry.glob("chunks/train/*.arrow")
    content = bytearray(arrow.read_bytes())
    content[-200] ^= 0xFF  # one token id, same size
    arrow.write_bytes(bytes(content))
    with caplog.at_level(logging.WARNING):
        again = chunk_ids(data_cache.prepare(settings, tiny_tokenizer))
    assert f"The cache entry {entry} is damaged (chunks/train/{arrow.name} differ from the checksums" in caplog.text
    assert again == fresh
    data_cache.read_entry(entry)  # the rebuilt entry is whole again
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [entry.name]


def test_orphans_of_killed_builds_are_removed_and_live_builds_kept(m4_data, tiny_tokenizer, tmp_path, caplog):
    cache = tmp_path / "cache"
    dead = cache / "0123.tmp-dead"
    dead.mkdir(parents=True)
    (dead / data_cache.BUILD_LOCK).touch()  # its builder was killed: nobody holds the lock
    (dead / "train.arrow").write_bytes(b"half")
    old_without_lock = cache / "4567.tmp-old"
    old_without_lock.mkdir()
    os.utime(old_without_lock, (time.time() - 2 * data_cache.ORPHAN_MIN_AGE_S,) * 2)
    live = cache / "89ab.tmp-live"
    live.mkdir()
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, "
        "fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)"
    )
    builder = subprocess.Popen(
        [sys.executable, "-c", code, str(live / data_cache.BUILD_LOCK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert builder.stdout.readline().strip() == "locked"
        with caplog.at_level(logging.WARNING):
            data_cache.prepare(cache_settings(m4_data, cache), tiny_tokenizer)
        assert not dead.exists() and not old_without_lock.exists() and live.is_dir()
        assert f"Removed 2 unfinished cache entries of killed runs from {cache}" in caplog.text
    finally:
        builder.kill()
        builder.wait()


def test_interrupted_build_leaves_nothing_and_an_unwritable_cache_falls_back(
    m4_data, tiny_tokenizer, tmp_path, monkeypatch, caplog
):
    cache = tmp_path / "cache"
    build = data_cache.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_cache, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data_cache.prepare(cache_settings(m4_data, cache), tiny_tokenizer)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(data_cache, "build", build)

    blocked = tmp_path / "a_file"
    blocked.write_text("in the way")
    with caplog.at_level(logging.WARNING):
        prepared = data_cache.prepare(cache_settings(m4_data, blocked / "cache"), tiny_tokenizer)
    assert f"The cache directory {blocked / 'cache'} cannot be written" in caplog.text
    uncached = data_cache.prepare(cache_settings(m4_data, cache, "--no_cache"), tiny_tokenizer)
    assert chunk_ids(prepared) == chunk_ids(uncached)


# ----------------------------------------------------------------------------------------------- prepare_data m4


def test_prepare_m4_never_leaves_a_half_written_output(tmp_path, capsys, monkeypatch):
    raw = tmp_path / "raw"
    for generator in ("chatGPT", "davinci", "flant5"):
        write_jsonl(raw / f"arxiv_{generator}.jsonl", m4_rows(4, generator))
    argv = ["m4", "--input_dir", raw, "--output_dir", tmp_path / "clean", "--min_chars", "10"]
    written = prepare_data.write_jsonl
    calls = []

    def disk_full_at_the_second_file(path, rows):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written(path, rows)

    monkeypatch.setattr(prepare_data, "write_jsonl", disk_full_at_the_second_file)
    outcome = run(prepare_data.main, argv, capsys)
    clean = tmp_path / "clean"
    outcome.expect_error(EXIT_USAGE, f"could not write {clean / 'arxiv_davinci.jsonl'} (No space left on device); ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no output directory, no temporary one
    monkeypatch.undo()

    assert run(prepare_data.main, argv, capsys).code == 0
    (tmp_path / "clean" / "stale.jsonl").write_text("from an earlier input\n")
    (raw / "arxiv_flant5.jsonl").unlink()
    assert run(prepare_data.main, argv, capsys).code == 0  # an earlier output is replaced as a whole
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == [
        "arxiv_chatGPT.jsonl",
        "arxiv_davinci.jsonl",
        "prepare_report.json",
    ]
    assert oct((tmp_path / "clean").stat().st_mode & 0o777) == oct(0o777 & ~(mask := os.umask(0)))
    os.umask(mask)


# ----------------------------------------------------------------------------------------------- interruptions


def test_ctrl_c_and_a_closed_pipe_in_predict(demo_run, tmp_path, capsys, monkeypatch):
    texts = write_jsonl(tmp_path / "t.jsonl", posts(40))

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(predict, "load_detector", ctrl_c)
        outcome = run(
            predict.main, ["--model_path", demo_run, "--input", texts, "--output", tmp_path / "p.jsonl"], capsys
        )
    outcome.expect_error(EXIT_INTERRUPTED, "interrupted (Ctrl-C)")
    assert not (tmp_path / "p.jsonl").exists()

    read_end, write_end = os.pipe()
    os.close(read_end)  # `predict.py ... | head -0`: the reader has gone
    with os.fdopen(write_end, "w") as stdout, monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        arguments = parse_predict_args(["--model_path", str(demo_run), "--input", str(texts)])
        code = run_cli(lambda: predict.predict(arguments))
    assert code == EXIT_BROKEN_PIPE
    assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- memory


MEMORY_SCRIPT = """
import json, resource, sys
import chunking, data_loaders
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
size = int(sys.argv[2])
small = chunking.chunk_documents(chunking.text_dataset(["warm up the tokenizer and datasets once"]), tokenizer, 64, 8)
words = "river bridge honey tide glacier chess jazz soil train reef wind solar".split()
base = " ".join(words[i % len(words)] + str(i % 7) for i in range(100_000))
text = (base * (size // len(base) + 1))[:size]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
text = data_loaders.normalize_text(text, data_loaders.TextNormalization(True, True))
chunks = chunking.chunk_documents(chunking.text_dataset([text]), tokenizer, 64, 8)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"chunks": len(chunks), "growth": after - before, "text": len(text)}))
"""


def test_one_huge_document_needs_at_most_20_times_its_size(tiny_model_dir):
    """Peak resident memory while normalising and chunking one 16 MB document grows by less than 20x its size.

    (It was 85x before texts were normalised and tokenised in pieces: str.split() and re.sub make one Python
    string per word, and the tokenizer's encoding of a whole text holds a string and offsets per token.)
    Measured as the growth of the process's peak RSS over a warmed-up process that did everything else once.
    """
    size = 16_000_000
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tiny_model_dir), str(size)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["text"] == size and measured["chunks"] > 10_000
    assert measured["growth"] < 20 * size, measured


@pytest.mark.parametrize("tokenizer_name", ["tiny_wordpiece", "roberta_bpe"])
def test_long_texts_are_encoded_in_pieces_with_the_same_ids(tokenizer_name, tiny_tokenizer, request):
    tokenizer = tiny_tokenizer if tokenizer_name == "tiny_wordpiece" else request.getfixturevalue("roberta_tokenizer")
    text = " ".join(words(i, 30) + " café 42, (naïve) — 日本語 ok!  " for i in range(6_000))
    assert len(text) > 3 * chunking.LONG_TEXT_PIECE_CHARS
    assert "".join(chunking.text_pieces(text, chunking.LONG_TEXT_PIECE_CHARS)) == text
    backend = chunking.plain_backend(tokenizer)
    whole = backend.encode_batch_fast([text], add_special_tokens=False)[0].ids
    assert chunking.encode_long_text(backend, text).tolist() == whole


# ----------------------------------------------------------------------------------------------- other rights


def restricted_command(command: list[str]) -> list[str]:
    """The command under rights that respect chmod: as is for a normal user, root via capsh without DAC override."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("capsh"):
        pytest.skip("running as root and capsh is not installed: chmod would not restrict anything")
    return ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", shlex.join(command)]


def run_cases(cases: dict, tmp_path: Path, wrap=restricted_command) -> dict:
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps({name: [module, [str(a) for a in argv]] for name, (module, argv) in cases.items()}))
    command = wrap([sys.executable, str(ROOT / "tests" / "field_case_runner.py"), str(spec)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {name: Outcome(r["code"], r["out"], r["err"]) for name, r in json.loads(result.stdout).items()}


def test_permission_cases_under_restricted_rights(demo_run, tiny_model_dir, tmp_path):
    data = tmp_path / "m4"
    write_jsonl(data / "arxiv_chatGPT.jsonl", m4_rows(12))
    secret = write_jsonl(tmp_path / "secret.jsonl", posts(3))
    secret.chmod(0)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "notes.txt").write_text("kept")
    locked.chmod(0o555)
    raw = tmp_path / "raw"
    write_jsonl(raw / "arxiv_chatGPT.jsonl", m4_rows(4))
    cases = {
        "train_unreadable_reddit_file": ("train", dry_run(tiny_model_dir, data, secret, tmp_path / "o1")),
        "train_read_only_output_dir": ("train", dry_run(tiny_model_dir, data, "none", locked)),
        "train_read_only_cache": (
            "train",
            [*dry_run(tiny_model_dir, data, "none", tmp_path / "o2")[:-1], "--cache_dir", locked / "cache"],
        ),
        "predict_unreadable_input": ("predict", ["--model_path", demo_run, "--input", secret]),
        "predict_read_only_report_dir": (
            "predict",
            [
                "--model_path",
                demo_run,
                "--input",
                data / "arxiv_chatGPT.jsonl",
                "--eval",
                "--report_dir",
                locked / "eval",
            ],
        ),
        "prepare_reddit_unreadable_dump": ("prepare_data", ["reddit", "--input", secret, "--output", tmp_path / "p"]),
        "prepare_m4_read_only_output": ("prepare_data", ["m4", "--input_dir", raw, "--output_dir", locked / "clean"]),
    }
    try:
        before = snapshot(locked, secret) if os.geteuid() == 0 else None
        results = run_cases(cases, tmp_path)
    finally:
        locked.chmod(0o755)
        secret.chmod(0o644)
    results["train_unreadable_reddit_file"].expect_error(EXIT_USAGE, f"{secret}: cannot be read (Permission denied)")
    results["train_read_only_output_dir"].expect_error(EXIT_USAGE, f"--output_dir {locked}: {locked} is not writable")
    assert results["train_read_only_cache"].code == 0
    assert f"The cache directory {locked / 'cache'} cannot be written" in results["train_read_only_cache"].err
    assert (tmp_path / "o2" / "data_report.json").is_file()
    results["predict_unreadable_input"].expect_error(EXIT_USAGE, f"{secret}: cannot be read (Permission denied)")
    results["predict_read_only_report_dir"].expect_error(
        EXIT_USAGE, f"--report_dir {locked / 'eval'}: {locked} is not writable"
    )
    results["prepare_reddit_unreadable_dump"].expect_error(EXIT_USAGE, f"{secret}: cannot be read (Permission")
    results["prepare_m4_read_only_output"].expect_error(EXIT_USAGE, f"{locked} is not writable")
    if before is not None:
        assert snapshot(locked, secret) == before


def in_small_tmpfs(mount_point: Path, size: str, listing: Path):
    """A wrapper running a command on a `size` tmpfs at `mount_point` (gone with its private mount namespace);
    what the command left there is written to `listing`."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("full-disk cases need root and unshare to mount a small tmpfs in a private mount namespace")
    mount = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(mount_point))}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")

    def wrap(command: list[str]) -> list[str]:
        after = f"status=$?; cd {shlex.quote(str(mount_point))} && find . > {shlex.quote(str(listing))}; exit $status"
        return ["unshare", "-m", "sh", "-c", f"{mount} && {shlex.join(command)}; {after}"]

    return wrap


def test_full_disk_cases_on_a_small_tmpfs(demo_run, demo_inputs, tmp_path):
    disk, listing = tmp_path / "disk", tmp_path / "left_on_disk.txt"
    disk.mkdir()
    wrap = in_small_tmpfs(disk, "200k", listing)
    raw = tmp_path / "raw"
    write_jsonl(raw / "arxiv_chatGPT.jsonl", m4_rows(2000))  # about 400 KB
    many = write_jsonl(tmp_path / "many.jsonl", posts(4000))  # about 320 KB of predictions
    predict_argv = ["--model_path", demo_run, "--input", many, "--output", disk / "predictions.jsonl"]
    cases = {
        "train_output_on_full_disk": ("train", tiny_train_args(demo_inputs, disk / "out")),
        "prepare_m4_output_on_full_disk": ("prepare_data", ["m4", "--input_dir", raw, "--output_dir", disk / "c"]),
        "predict_output_fills_the_disk": ("predict", predict_argv),
    }
    results = run_cases(cases, tmp_path, wrap=wrap)
    trained = results["train_output_on_full_disk"]
    trained.expect_error(
        EXIT_USAGE,
        f"--output_dir {disk / 'out'}: ",
        "KB free on its disk, but 3 checkpoints and the final model of this ",
        "free space, lower --save_total_limit or choose another --output_dir",
    )
    assert "Loaded" not in trained.err  # refused before any data was read
    results["prepare_m4_output_on_full_disk"].expect_error(EXIT_USAGE, "free on its disk, but the cleaned files need")
    results["predict_output_fills_the_disk"].expect_error(
        EXIT_USAGE, f"could not write {disk / 'predictions.jsonl'} (No space left on device); ", "free on that disk"
    )
    assert sorted(listing.read_text().split()) == ["."]  # no partial file, no temporary file, no empty directory
