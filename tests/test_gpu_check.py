"""bench/gpu_check.sh --allow_cpu: every step of the GPU rehearsal, scaled down, on the shared sample (~50 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, read_jsonl

STEPS = ("throughput", "train", "predict", "app")


def test_gpu_check_rehearses_every_step_on_a_cpu(shared_data, tmp_path):
    # The CPU scale even on a GPU machine; one thread per process: OpenMP threads spin 10-30x slower on a busy CPU.
    env = {**os.environ, "M4_SHARED_DATA": str(shared_data), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--allow_cpu", "--train_steps", "2", "--work_dir", "gc"],
        cwd=tmp_path,  # a relative --work_dir is the caller's, not the repository's
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    work_dir = tmp_path / "gc"
    table = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table == ["step", *STEPS]

    scored = [row for row in read_jsonl(shared_data / "reddit" / "reddit_wsb_training.jsonl") if row["text"].strip()]
    predictions = read_jsonl(work_dir / "predictions.jsonl")
    assert len(predictions) == len(scored) > 1000
    config = json.loads((work_dir / "train" / "training_config.json").read_text())
    assert all(0.0 <= row["prob_machine"] <= 1.0 for row in predictions)
    assert len({row["prob_machine"] for row in predictions}) > 100  # scored, not a constant
    assert all(row["pred"] == int(row["prob_machine"] >= config["threshold"]) for row in predictions)
    assert config["arguments"]["training"]["max_steps"] == 2
    assert config["chunking"]["max_length"] == 64  # the CPU scale

    report = json.loads((work_dir / "gpu_check.json").read_text())
    assert [row["step"] for row in report["steps"]] == list(STEPS) and all(row["ok"] for row in report["steps"])
    app = report["steps"][3]["details"]
    assert 0 < app["latency_512_tokens_s"] < 60 and app["windows_512_tokens"] > 1  # 512 tokens in windows of 64
