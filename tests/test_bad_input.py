"""Bad input through `train.main`: every problem is a counted skip (file:line logged, reason in data_report.json)
or a one-line error with a non-zero exit code; never a traceback, never a silently dropped row."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from conftest import tiny_train_args, write_jsonl

import train
from m4_training.cli import EXIT_TRAINING, EXIT_USAGE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def good_m4_rows(prefix: str, n: int) -> list[dict]:
    return [
        {
            "human_text": f"{prefix} human draft {i}: we measured the river flow twice and the numbers look off.",
            "machine_text": f"{prefix} machine text {i}: furthermore, it is important to note that flows vary.",
            "source_ID": i,
        }
        for i in range(n)
    ]


def dry_run_args(model_dir, data_dir, reddit_file, output_dir, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir),
        "--data_dir", str(data_dir),
        "--reddit_file", str(reddit_file),
        "--train_domains", "arxiv",
        "--train_generators", "chatgpt",
        "--stratified_split",
        "--validation_split", "0.3",
        "--max_length", "64",
        "--chunk_overlap", "8",
        "--output_dir", str(output_dir),
        "--dry_run",
        *extra,
    ]  # fmt: skip


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    code = train.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def error_line(err: str) -> str:
    """The one stderr line with the error (a progress bar may precede it on the same line)."""
    lines = [line[line.index("error: ") :] for line in err.replace("\r", "\n").splitlines() if "error: " in line]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_rows_are_counted_with_file_and_line(tiny_model_dir, tmp_path, caplog, capsys):
    data_dir = tmp_path / "m4"
    good = good_m4_rows("arxiv", 12)
    m4_file = write_jsonl(
        data_dir / "arxiv_chatGPT.jsonl",
        [
            b"\xef\xbb\xbf" + json.dumps(good[0]).encode(),  # 1: UTF-8 BOM on the first line: read normally
            good[1],  # 2
            '{"human_text": "broken", ',  # 3: malformed JSON
            b'{"human_text": "caf\xe9 latte", "machine_text": "x"}',  # 4: invalid UTF-8 (latin-1 byte)
            {"human_text": None, "machine_text": "a machine text with a null human twin"},  # 5
            {"human_text": "", "machine_text": "a machine text with an empty human twin"},  # 6
            {"human_text": "  \n\t ", "machine_text": "a machine text with a blank human twin"},  # 7
            {"human_text": ["first part of a list text", "second part"], "machine_text": "list-valued twin"},  # 8
            {"unrelated": "no text keys at all"},  # 9
            "[1, 2, 3]",  # 10: JSON but not an object
            *good[2:],  # 11..20
        ],
    )
    write_jsonl(data_dir / "arxiv_gpt9.jsonl", good_m4_rows("ignored", 2))  # a generator nobody asked for
    write_jsonl(data_dir / "notes.jsonl", [{"text": "not an M4 file"}])
    reddit_file = write_jsonl(
        tmp_path / "reddit.jsonl",
        [
            {"text": "lol my cat knocked the router off the shelf again", "label": "1"},  # 1: machine
            {"text": "idk why but the bus was early today", "label": 1.0},  # 2: machine
            {"text": "pretty sure this is the third time this week", "label": 2},  # 3: invalid label
            {"text": "tbh the pizza place downtown is overrated", "label": None},  # 4: default human
            {"text": "   "},  # 5: whitespace-only text
            {"body": "anyway the game went to overtime", "label": 0},  # 6: text under `body`
            {"id": "no text"},  # 7: missing text key
        ],
    )
    output_dir = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        code, _ = run_main(dry_run_args(tiny_model_dir, data_dir, reddit_file, output_dir, "--no_cache"), capsys)
    assert code == 0

    report = json.loads((output_dir / "data_report.json").read_text())
    files = {entry["path"]: entry for entry in report["files"]}
    m4 = files[str(m4_file)]
    assert m4["rows"] == 20
    assert m4["skipped"] == {
        "human_text_empty": 2,
        "human_text_missing": 1,
        "human_text_null": 1,
        "invalid_utf8": 1,
        "machine_text_missing": 1,
        "malformed_json": 1,
        "not_a_json_object": 1,
    }
    # rows 1, 2, 5-8 and 11-20 gave at least one document; rows 3, 4, 9, 10 none.
    assert m4["used"] == 16
    reddit = files[str(reddit_file)]
    assert reddit["rows"] == 7 and reddit["used"] == 4
    assert reddit["skipped"] == {"label_invalid": 1, "text_empty": 1, "text_missing": 1}
    ignored = {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in report["files_ignored"]}
    assert ignored == {
        "arxiv_gpt9.jsonl": "generator gpt9 not in --train_generators",
        "notes.jsonl": "name is not <domain>_<generator>.jsonl",
    }

    log = caplog.text
    for line, reason in [(3, "malformed_json"), (4, "invalid_utf8"), (5, "human_text_null"), (6, "human_text_empty"),
                         (7, "human_text_empty"), (9, "human_text_missing"), (10, "not_a_json_object")]:  # fmt: skip
        assert f"{m4_file}:{line}: skipped ({reason})" in log
    assert f"{reddit_file}:3: skipped (label_invalid)" in log
    assert "arxiv_gpt9.jsonl (generator gpt9 not in --train_generators)" in log

    rows = [json.loads(line) for line in (output_dir / "splits.jsonl").read_text().splitlines()]
    sources = {(s["file"], s["line"], s["field"]): row for row in rows for s in row["sources"]}
    assert (str(m4_file), 1, "human_text") in sources  # the BOM line
    assert (str(m4_file), 8, "human_text") in sources  # the list-valued text, joined
    labels = {line: sources[(str(reddit_file), line, field)]["label"] for line, field in
              [(1, "text"), (2, "text"), (4, "text"), (6, "body")]}  # fmt: skip
    assert labels == {1: 1, 2: 1, 4: 0, 6: 0}
    # Nothing lost silently: every document-bearing source line is in splits.jsonl or counted somewhere.
    documents = sum(entry["documents"] for entry in report["files"])
    assert documents == len(sources) == report["documents_loaded"] + report["duplicates_removed"]


def one_line_error(capsys, argv: list[str], expected_code: int, *fragments: str) -> None:
    code, err = run_main(argv, capsys)
    assert code == expected_code
    line = error_line(err)
    for fragment in fragments:
        assert fragment in line


@pytest.fixture
def small_data(tmp_path):
    data_dir = tmp_path / "m4"
    write_jsonl(data_dir / "arxiv_chatGPT.jsonl", good_m4_rows("arxiv", 10))
    reddit_file = write_jsonl(tmp_path / "reddit.jsonl", [{"text": f"lol post number {i} is here"} for i in range(6)])
    return data_dir, reddit_file


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--validation_split", "0"], ["--validation_split must be between 0 and 1"]),
        (["--validation_split", "1"], ["--validation_split must be between 0 and 1"]),
        (["--validation_split", "1.5"], ["--validation_split must be between 0 and 1"]),
        (["--chunk_overlap", "62"], ["--chunk_overlap 62 must be at least 0 and below the 62 text tokens"]),
        (["--chunk_overlap", "100"], ["--chunk_overlap must be in [0, --max_length), got 100"]),
        (["--max_length", "1024"], ["--max_length 1024 exceeds", "512"]),
    ],
)
def test_bad_arguments_are_one_line_errors(tiny_model_dir, small_data, tmp_path, capsys, extra, fragments):
    argv = dry_run_args(tiny_model_dir, *small_data, tmp_path / "out", *extra)
    one_line_error(capsys, argv, EXIT_USAGE, *fragments)
    assert not (tmp_path / "out" / "splits.jsonl").exists()


def test_max_length_above_the_model_positions(tiny_model_dir, small_data, tmp_path, capsys):
    # A tokenizer that states no limit: the model's 512 position embeddings still bound --max_length.
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config_path = model_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config.pop("model_max_length", None)
    config_path.write_text(json.dumps(tokenizer_config))
    argv = dry_run_args(model_dir, *small_data, tmp_path / "out", "--max_length", "600")
    one_line_error(capsys, argv, EXIT_USAGE, "--max_length 600 exceeds the 512 positions")


def test_empty_data_directory(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = dry_run_args(tiny_model_dir, tmp_path / "empty", "none", tmp_path / "out")
    one_line_error(capsys, argv, EXIT_USAGE, "no <domain>_<generator>.jsonl files in", str(tmp_path / "empty"))


def test_only_unknown_generator_files(tiny_model_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "m4" / "arxiv_gpt9.jsonl", good_m4_rows("arxiv", 4))
    argv = dry_run_args(tiny_model_dir, tmp_path / "m4", "none", tmp_path / "out")
    one_line_error(capsys, argv, EXIT_USAGE, "--train_generators chatgpt matches no file; generators there: gpt9")


def test_training_split_with_one_class(tiny_model_dir, tmp_path, capsys):
    # Every machine text is missing: only human documents remain (and class weights are not even asked for).
    topics = ["rivers", "bridges", "bees", "tides", "glaciers", "chess", "jazz", "soil", "trains", "reefs"]
    rows = [{"human_text": f"only a human wrote this note about {topic}."} for topic in topics]
    write_jsonl(tmp_path / "m4" / "arxiv_chatGPT.jsonl", rows)
    argv = dry_run_args(tiny_model_dir, tmp_path / "m4", "none", tmp_path / "out")
    one_line_error(capsys, argv, EXIT_USAGE, "the training split has only human documents", "both human and machine")


def test_missing_reddit_file(tiny_model_dir, small_data, tmp_path, capsys):
    argv = dry_run_args(tiny_model_dir, small_data[0], tmp_path / "nope.jsonl", tmp_path / "out")
    one_line_error(capsys, argv, EXIT_USAGE, "Reddit file not found")


def test_non_finite_loss_stops_training_naming_the_step(demo_inputs, tmp_path, capsys):
    # A learning rate of 1e30 sends the weights to inf within a few updates, and the loss to NaN.
    argv = tiny_train_args(demo_inputs, tmp_path / "out", "--lr", "1e30", "--use_class_weights", "--no_cache")
    one_line_error(capsys, argv, EXIT_TRAINING, "non-finite training loss (nan) at step ", "lower --lr")
    assert not (tmp_path / "out" / "metrics.json").exists()
