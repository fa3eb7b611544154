"""Same seed and data -> byte-identical splits.jsonl (also across processes and hash seeds); another seed -> another
split with the same guarantees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from conftest import ROOT, tiny_train_args

import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dry_run(demo_inputs, output_dir, *extra: str) -> list[str]:
    # --no_cache: the split must be recomputed, not read back from the first run's cache entry.
    return tiny_train_args(demo_inputs, output_dir, "--dry_run", "--no_cache", *extra)


def split_rows(output_dir):
    return [json.loads(line) for line in (output_dir / "splits.jsonl").read_text(encoding="utf-8").splitlines()]


def check_guarantees(rows, validation_split: float) -> None:
    sides = {"train": set(), "val": set()}
    for row in rows:
        sides[row["split"]].add(row["group_id"])
    assert sides["train"] and sides["val"]
    assert not sides["train"] & sides["val"]
    counts = Counter(row["split"] for row in rows)
    assert abs(counts["val"] / len(rows) - validation_split) <= 0.03
    assert {row["label"] for row in rows if row["split"] == "train"} == {0, 1}


@pytest.mark.parametrize("flow", [["--stratified_split"], []], ids=["stratified", "generator_holdout"])
def test_same_seed_same_bytes_other_seed_other_split(demo_inputs, tmp_path, flow):
    # Whole data (no sampling) so the stratified split's ratio guarantee applies.
    full = ["--max_train_samples", "100000", "--max_val_samples", "100000", *flow]
    first, second, other = tmp_path / "first", tmp_path / "second", tmp_path / "other"
    assert train.main(dry_run(demo_inputs, first, *full)) == 0
    assert train.main(dry_run(demo_inputs, second, *full)) == 0
    assert (first / "splits.jsonl").read_bytes() == (second / "splits.jsonl").read_bytes()
    assert (first / "data_report.json").read_bytes() == (second / "data_report.json").read_bytes()

    assert train.main(dry_run(demo_inputs, other, *full, "--seed", "7")) == 0
    first_rows, other_rows = split_rows(first), split_rows(other)
    assert [row["doc_id"] for row in first_rows] != [row["doc_id"] for row in other_rows]
    for rows in (first_rows, other_rows):
        train_groups = {row["group_id"] for row in rows if row["split"] == "train"}
        assert not train_groups & {row["group_id"] for row in rows if row["split"] == "val"}
    if flow:  # stratified: every document on one side, the validation share kept
        assert sorted(row["doc_id"] for row in first_rows) == sorted(row["doc_id"] for row in other_rows)
        check_guarantees(first_rows, 0.1)
        check_guarantees(other_rows, 0.1)
    else:  # hold-out: the validation generator is never trained on, whatever the seed
        for rows in (first_rows, other_rows):
            assert not [row for row in rows if row["split"] == "train" and row["generator"] == "flant5"]
            assert {row["generator"] for row in rows if row["split"] == "val" and row["label"] == 1} == {"flant5"}


def test_split_does_not_depend_on_the_process_or_hash_seed(demo_inputs, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    assert train.main(dry_run(demo_inputs, here)) == 0
    env = {**os.environ, "PYTHONHASHSEED": "12345", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "train.py"), *dry_run(demo_inputs, there)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (here / "splits.jsonl").read_bytes() == (there / "splits.jsonl").read_bytes()
