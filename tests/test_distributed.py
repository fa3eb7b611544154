"""`torchrun --nproc_per_node 2` on CPU (gloo): one model, one set of reports, the whole validation set, and the
data really sharded over the two processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT, read_jsonl, tiny_train_args

import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_two_process_run_matches_single_process_data(demo_inputs, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    assert train.main(tiny_train_args(demo_inputs, single, "--cache_dir", str(tmp_path / "cache1"))) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    train_args = tiny_train_args(demo_inputs, double, "--cache_dir", str(tmp_path / "cache2"))
    # train.py's main, then the distributed state it leaves, freed by the collector (which holds the GIL: a gloo
    # worker thread still holding a collective's tensors would deadlock it, as it aborts interpreter shutdown)
    runner = tmp_path / "train_then_inspect.py"
    runner.write_text(
        "import gc, sys, torch, train\n"
        "exit_code = train.main(sys.argv[1:])\n"
        "gc.collect()\n"
        "wrappers = sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects())\n"
        "print(f'after main: group {torch.distributed.is_initialized()}, DDP wrappers {wrappers}')\n"
        "sys.exit(exit_code)\n"
    )
    command = [*launcher, str(runner), *train_args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # Each process left its process group (WeightedTrainer.end), and nothing kept the DDP wrapper alive.
    assert output.count("after main: group False, DDP wrappers 0") == 2, output[-4000:]

    # Rank 0 alone printed and wrote: one data summary, one metrics table, one model, no stray temp files.
    assert output.count("Split flow:") == 1
    assert output.count("Model, tokenizer and reports written to") == 1
    assert "Global batch size 16 = 8 per device x 1 accumulation steps x 2 processes" in output
    assert sorted(p.name for p in double.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(double.rglob("*.tmp"))

    # The same split, and the final metrics over the whole validation set (not one rank's half).
    assert (double / "splits.jsonl").read_bytes() == (single / "splits.jsonl").read_bytes()
    val_doc_ids = sorted(row["doc_id"] for row in read_jsonl(single / "splits.jsonl") if row["split"] == "val")
    for run_dir in (single, double):
        assert sorted(row["id"] for row in read_jsonl(run_dir / "eval_predictions.jsonl")) == val_doc_ids
    for run_dir in (single, double):
        assert json.loads((run_dir / "metrics.json").read_text())["document"]["n"] == len(val_doc_ids)

    # Each process saw half of the training chunks per epoch: steps = ceil(ceil(N / 2) / 8), not ceil(N / 8).
    report = json.loads((double / "data_report.json").read_text())
    train_chunks = sum(report["chunks"]["train"].values())
    config = json.loads((double / "training_config.json").read_text())
    assert config["batch_size"] == {
        "per_device_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "world_size": 2,
        "global_batch_size": 16,
    }
    (checkpoint,) = double.glob("checkpoint-*")
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["max_steps"] == math.ceil(math.ceil(train_chunks / 2) / 8)
    assert state["max_steps"] < math.ceil(train_chunks / 8)
