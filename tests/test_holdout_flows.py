"""Leave-one-domain-out and the generator hold-out as the M4 paper runs them: what is loaded, what is held out,
what is counted; the sweep recipes and their summary table."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, read_jsonl, tiny_train_args
from test_data_loaders import synthetic_corpus

import train
from m4_training import splits
from m4_training.cli import UserError
from m4_training.data_cache import loaded_selection
from m4_training.summarize_runs import summary
from m4_training.train_args import parse_train_args


def test_domain_holdout_never_trains_on_the_domain(tmp_path):
    corpus = synthetic_corpus(tmp_path)  # arxiv and wikihow, 60 rows x 3 generators each, 200 posts
    split = splits.split_corpus(corpus, False, 0.1, None, 0.25, seed=0, val_domain="wikihow")
    assert split.flow == "domain_holdout" and splits.group_overlap(split) == 0
    assert not any(d.domain == "wikihow" for d in split.train)
    assert Counter(d.domain for d in split.val) == {"wikihow": 60 + 3 * 60, "reddit_posts": 50}
    assert Counter(d.domain for d in split.train) == {"arxiv": 60 + 3 * 60, "reddit_posts": 150}
    assert split.dropped == {}  # no group spans two domains here
    assert len(split.train) + len(split.val) == len(corpus.documents)
    assert {d.text for d in split.train}.isdisjoint({d.text for d in split.val})


def test_domain_holdout_drops_other_domains_of_a_held_out_group_and_lists_domains(tmp_path):
    corpus = synthetic_corpus(tmp_path, n_posts=10)
    arxiv_doc = next(d for d in corpus.documents if d.domain == "arxiv")
    wikihow_doc = next(d for d in corpus.documents if d.domain == "wikihow")
    arxiv_doc.group_id = wikihow_doc.group_id  # as when one text appears in both domains' files
    split = splits.domain_holdout_split(corpus, "wikihow", 0.1, seed=0)
    assert split.dropped == {"other_domain_in_validation_group": 1}
    assert split.dropped_documents == [("other_domain_in_validation_group", arxiv_doc)]
    with pytest.raises(UserError) as error:
        splits.domain_holdout_split(corpus, "peerread", 0.1, seed=0)
    assert "--val_domain peerread is not in the loaded data" in str(error.value)
    assert "M4 domains found: arxiv, wikihow" in str(error.value)  # not the Reddit file's reddit_posts


def test_split_flags_choose_one_flow(caplog):
    assert train.data_settings(parse_train_args([])).held_out_generator == "flant5"
    domain = train.data_settings(parse_train_args(["--val_domain", "Wikihow"]))
    assert (domain.val_domain, domain.val_generator, domain.held_out_generator) == ("wikihow", None, None)
    for flags, other in (
        (["--stratified_split"], "--stratified_split"),
        (["--val_generator", "dolly"], "--val_generator dolly"),
    ):
        with pytest.raises(UserError, match=f"--val_domain arxiv and {other}.* pick one"):
            parse_train_args(["--val_domain", "arxiv", *flags])
    with caplog.at_level(logging.WARNING):
        stratified = train.data_settings(parse_train_args(["--stratified_split", "--val_generator", "dolly"]))
    assert stratified.held_out_generator is None and "--val_generator dolly is unused" in caplog.text


def test_held_out_files_are_loaded_even_when_not_listed_for_training():
    def settings(*argv: str):
        return train.data_settings(parse_train_args(list(argv)))

    old_tool = settings("--val_generator", "flant5", "--train_generators", "chatGPT", "davinci", "dolly2")
    assert loaded_selection(old_tool)[1] == ["chatGPT", "davinci", "dolly2", "flant5"]
    listed = settings("--val_generator", "flan-t5")  # an alias of a listed generator: not added twice
    assert loaded_selection(listed)[1] == listed.train_generators
    domain = settings("--val_domain", "peerread", "--train_domains", "arxiv", "wikihow")
    assert loaded_selection(domain) == (["arxiv", "wikihow", "peerread"], domain.train_generators)
    stratified = settings("--stratified_split", "--val_generator", "x", "--train_generators", "a")
    assert loaded_selection(stratified)[1] == ["a"]


def test_dry_runs_of_both_hold_outs_on_the_demo_data(demo_inputs, tmp_path):
    """The old tool's spelling works, and leave-one-domain-out keeps the held-out domain out of training."""
    generator_run = tmp_path / "generator"
    everything = ["--max_train_samples", "1000", "--max_val_samples", "1000"]
    old_tool = ["--train_generators", "chatgpt", "davinci", "--val_generator", "flant5"]
    argv = tiny_train_args(demo_inputs, generator_run, "--dry_run", *old_tool, *everything)
    assert train.main(argv) == 0
    rows = read_jsonl(generator_run / "splits.jsonl")
    assert {r["generator"] for r in rows if r["split"] == "val"} == {"human", "flant5"}
    assert {r["generator"] for r in rows if r["split"] == "train"} == {"human", "chatgpt", "davinci"}
    report = json.loads((generator_run / "data_report.json").read_text())
    assert {f["generator"] for f in report["files"] if f["kind"] == "m4"} == {"chatgpt", "davinci", "flant5"}

    domain_run = tmp_path / "domain"
    held_out = ["--train_domains", "arxiv", "reddit", "--val_domain", "wikipedia"]
    argv = tiny_train_args(demo_inputs, domain_run, "--dry_run", *held_out, *everything)
    assert train.main(argv) == 0
    rows = read_jsonl(domain_run / "splits.jsonl")
    report = json.loads((domain_run / "data_report.json").read_text())
    assert report["split_flow"] == "domain_holdout"
    assert {r["domain"] for r in rows if r["split"] == "train"} == {"arxiv", "reddit", "reddit_demo"}
    assert {r["domain"] for r in rows if r["split"] == "val"} == {"wikipedia", "reddit_demo"}
    wikipedia = [r for r in rows if r["domain"] == "wikipedia"]
    assert Counter(r["label"] for r in wikipedia) == {0: 30, 1: 30 * 4}  # every human and machine text
    assert report["groups"]["train"] + report["groups"]["val"] == len({r["group_id"] for r in rows})


def fake_run(directory: Path, flow: str, split: dict, metrics: dict) -> Path:
    directory.mkdir(parents=True)
    settings = {"data_summary": {"split_flow": flow}, "arguments": {"split": split}}
    (directory / "training_config.json").write_text(json.dumps(settings))
    (directory / "metrics.json").write_text(json.dumps(metrics))
    return directory


def part(f1, auroc, n_human=4, n_machine=4, fpr=0.0):
    return {"n": n_human + n_machine, "n_human": n_human, "n_machine": n_machine, "f1_macro": f1, "auroc": auroc,
            "fpr_human": fpr}  # fmt: skip


def test_summary_table_reads_each_runs_held_out_slice(tmp_path):
    domain = fake_run(
        tmp_path / "arxiv",
        "domain_holdout",
        {"val_domain": "arxiv", "val_generator": None},
        {
            "threshold": {"value": 0.4},
            "document": part(0.5, 0.6) | {"by_domain": {"arxiv": part(0.8, 0.9, 3, 5), "reddit_wsb": part(1.0, None)}},
            "baseline": {"document": part(0.1, 0.2) | {"by_domain": {"arxiv": part(0.7, 0.75)}}},
            "test": {"m4_multi": {"test_overlap_removed": 24, "document": part(0.6, 0.65), "baseline": {}}},
        },
    )
    generator = fake_run(
        tmp_path / "flant5",
        "generator_holdout",
        {"val_domain": None, "val_generator": "flan-t5"},  # an alias: its metrics are under the canonical name
        {"threshold": {"value": 0.6}, "document": part(0.1, 0.1) | {"by_generator": {"flant5": part(0.6, 0.7)}}},
    )
    (tmp_path / "broken").mkdir()
    table = summary([domain, generator, tmp_path / "broken"])
    lines = table.splitlines()
    assert (
        "| arxiv | domain hold-out | arxiv | 3 | 5 | 0.400 | 0.800 | 0.900 | 0.000 | - | - | 0.700 | 0.750 |" in lines
    )
    assert (
        "| flant5 | generator hold-out | flant5 | 4 | 4 | 0.600 | 0.600 | 0.700 | 0.000 | - | - | - | - |" in lines
    ), table
    assert "| broken | not finished (no metrics.json or training_config.json) |" + " - |" * 11 in lines
    assert "| mean | - | - | - | - | - | 0.700 | 0.800 | 0.000 | - | - | 0.700 | 0.750 |" in lines
    assert "| arxiv | m4_multi | 8 | 24 | 0.600 | 0.650 | 0.000 | - | - | - | - |" in lines


def test_sweep_recipe_runs_every_item_then_the_summary_and_reports_failures(tmp_path):
    """With a stand-in python that records its arguments (and fails for one item), no training needed."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in *"--val_domain wikihow"*) exit 1;; esac\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "HOLDOUT_DOMAINS": "arxiv wikihow reddit", "OUTPUT_ROOT": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "example_commands.sh"), "leave-one-domain-out", "--epochs", "1"],
                            capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    calls = log.read_text().splitlines()
    assert [c.split("--val_domain ")[1].split()[0] for c in calls[:3]] == ["arxiv", "wikihow", "reddit"]
    assert all(c.endswith("--epochs 1") for c in calls[:3])
    root = tmp_path / "leave-one-domain-out"
    assert calls[3] == (
        f"-m m4_training.summarize_runs --runs {root}/arxiv {root}/wikihow {root}/reddit --output {root}/summary.md"
    )
    assert result.returncode == 3 and "the runs holding out wikihow failed" in result.stderr
