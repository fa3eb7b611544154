"""setup_runpod.sh and example_commands.sh: help, list, --print (anywhere on the line), failures with clear
messages, and a full `--allow_cpu` rehearsal of the setup on the demo data on a machine without `nvidia-smi`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from m4_training import demo

ROOT = Path(__file__).resolve().parents[1]
FAKE_GPU = "NVIDIA Fake A6000, 49140 MiB, 550.54"


def run_script(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 120, cwd: Path | None = None):
    return subprocess.run(
        ["bash", str(ROOT / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,  # no TTY, as on a pod started by a template
    )


@pytest.fixture
def fake_gpu_env(tmp_path):
    """PATH with an `nvidia-smi` that prints one GPU; the test's Python and offline hub."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f'#!/bin/sh\necho "{FAKE_GPU}"\n')
    fake.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "HF_HUB_OFFLINE": "1",
    }


# ----------------------------------------------------------------------------------------------- example_commands.sh


def test_example_commands_list_help_and_unknown():
    listing = run_script("example_commands.sh", "list")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert names[:7] == ["base", "roberta-large", "holdout", "dry-run", "resume", "multi-gpu", "multi-gpu-accelerate"]
    help_text = run_script("example_commands.sh", "--help")
    assert help_text.returncode == 0 and "Usage:" in help_text.stdout and "holdout" in help_text.stdout
    unknown = run_script("example_commands.sh", "--print", "nope")
    assert unknown.returncode == 2 and "unknown recipe 'nope'" in unknown.stderr


def test_example_commands_print_uses_environment_and_extra_flags():
    env = {**os.environ, "DATA_DIR": "/data/m4 dir", "REDDIT_FILE": "/data/r.jsonl", "OUTPUT_ROOT": "/out"}
    env |= {"NGPU": "4", "PYTHON": "py"}
    base = run_script("example_commands.sh", "--print", "base", "--epochs", "1", env=env)
    assert base.returncode == 0
    assert base.stdout.split() == [
        *"py train.py --model roberta-base --data_dir /data/m4\\ dir --reddit_file /data/r.jsonl".split(),
        *"--use_class_weights --stratified_split --output_dir /out/roberta-base --epochs 1".split(),
    ]
    anywhere = run_script("example_commands.sh", "base", "--epochs", "1", "--print", env=env)
    assert anywhere.returncode == 0 and anywhere.stdout == base.stdout  # printed, not run
    laptop = run_script("example_commands.sh", "laptop", "--print", env={**env, "LAPTOP_MODEL": "/models/mini lm"})
    laptop_args = shlex.split(laptop.stdout)  # the command as the shell would run it
    assert laptop_args[:4] == ["py", "train.py", "--model", "/models/mini lm"]
    for flag, value in (("--max_train_samples", "400"), ("--max_val_samples", "200"), ("--max_steps", "100")):
        assert laptop_args[laptop_args.index(flag) + 1] == value
    assert laptop_args[laptop_args.index("--eval_strategy") + 1] == "no"
    multi = run_script("example_commands.sh", "--print", "multi-gpu", env=env).stdout.split()
    assert multi[:4] == ["torchrun", "--standalone", "--nproc_per_node", "4"] and multi[4] == "train.py"
    resume = run_script("example_commands.sh", "--print", "resume", env=env).stdout.split()
    assert resume[-2:] == ["--resume_from_checkpoint", "auto"]
    holdout = run_script("example_commands.sh", "--print", "holdout", env=env).stdout.split()
    assert "--stratified_split" not in holdout and holdout[holdout.index("--val_generator") + 1] == "flant5"


def test_example_commands_resolves_relative_paths_from_the_callers_directory(tmp_path):
    """The script changes into the repository: relative paths in the environment are the caller's, made absolute
    first (a local LAPTOP_MODEL directory too; a hub id and REDDIT_FILE=none stay as given)."""
    (tmp_path / "mini").mkdir()
    env = {**os.environ, "DATA_DIR": "m4", "REDDIT_FILE": "r.jsonl", "OUTPUT_ROOT": "out", "LAPTOP_MODEL": "mini"}
    env |= {"PYTHON": "venv/bin/python"}
    laptop = shlex.split(run_script("example_commands.sh", "laptop", "--print", env=env, cwd=tmp_path).stdout)
    for flag, value in (("--model", "mini"), ("--data_dir", "m4"), ("--reddit_file", "r.jsonl")):
        assert laptop[laptop.index(flag) + 1] == str(tmp_path / value)
    assert laptop[0] == str(tmp_path / "venv/bin/python")
    assert laptop[laptop.index("--output_dir") + 1] == str(tmp_path / "out" / "laptop")
    env |= {"REDDIT_FILE": "none", "LAPTOP_MODEL": "org/model", "PYTHON": "py"}
    laptop = shlex.split(run_script("example_commands.sh", "laptop", "--print", env=env, cwd=tmp_path).stdout)
    assert laptop[0] == "py" and laptop[laptop.index("--reddit_file") + 1] == "none"
    assert laptop[laptop.index("--model") + 1] == "org/model"


def test_example_commands_runs_the_recipe(tmp_path):
    """Without --print the recipe really runs (a prepare-reddit on a tiny dump: fast, no model), from another
    directory with relative paths: it reads and writes there, not in the repository."""
    (tmp_path / "dump.jsonl").write_text(
        json.dumps({"text": "a post long enough to keep " * 3, "created_utc": 1600000000, "id": "p"}) + "\n"
    )
    env = {**os.environ, "PYTHON": sys.executable, "REDDIT_DUMP": "dump.jsonl", "REDDIT_FILE": "r.jsonl"}
    result = run_script("example_commands.sh", "prepare-reddit", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in open(tmp_path / "r.jsonl")] == ["p"]
    assert f"--output {tmp_path / 'r.jsonl'}" in result.stderr  # the log line names the absolute path


# ----------------------------------------------------------------------------------------------- setup_runpod.sh


def test_setup_help_and_bad_option():
    result = run_script("setup_runpod.sh", "--help")
    assert result.returncode == 0 and "--skip_install" in result.stdout and "--allow_cpu" in result.stdout
    bad = run_script("setup_runpod.sh", "--frobnicate")
    assert bad.returncode == 2 and "unknown option: --frobnicate" in bad.stderr
    missing_value = run_script("setup_runpod.sh", "--data_dir")
    assert missing_value.returncode == 2 and "--data_dir needs a value" in missing_value.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a real nvidia-smi")
def test_setup_fails_without_nvidia_smi():
    result = run_script("setup_runpod.sh", "--skip_install", env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "nvidia-smi not found" in result.stderr


def test_setup_fails_on_missing_or_empty_data(tmp_path, fake_gpu_env):
    data_dir, reddit_file = demo.write_demo_data(tmp_path / "demo", rows_per_file=3, reddit_posts=3)
    missing_dir = run_script(
        "setup_runpod.sh", "--skip_install", "--data_dir", str(tmp_path / "nope"), env=fake_gpu_env
    )
    assert missing_dir.returncode == 1 and f"data directory not found: {tmp_path / 'nope'}" in missing_dir.stderr
    assert FAKE_GPU in missing_dir.stdout  # the GPU step ran and printed the fake GPU first
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    empty_reddit = run_script(
        "setup_runpod.sh", "--skip_install", "--data_dir", str(data_dir), "--reddit_file", str(empty), env=fake_gpu_env
    )
    assert empty_reddit.returncode == 1 and f"Reddit file is empty: {empty}" in empty_reddit.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi", path="/usr/bin:/bin") is not None, reason="a real nvidia-smi")
def test_setup_rehearses_every_step_on_a_cpu_machine(tmp_path, fake_gpu_env, tiny_model_dir):
    """With a GPU driver but CPU torch the script stops at step 4; with --allow_cpu and no nvidia-smi at all it
    runs all seven steps on the demo sample and the tiny model: install check, dry run, a 2-step smoke training."""
    data_dir, reddit_file = demo.write_demo_data(tmp_path / "demo", rows_per_file=12, reddit_posts=40)
    out = tmp_path / "setup_out"
    common = ["--data_dir", str(data_dir), "--reddit_file", str(reddit_file)]
    common += ["--model", str(tiny_model_dir), "--output_dir", str(out)]
    train_flags = ["--", "--max_length", "128", "--chunk_overlap", "8", "--batch_size", "64", "--baseline", "none"]
    train_flags += ["--cache_dir", str(tmp_path / "cache"), "--train_generators", "chatGPT", "davinci", "flant5"]

    no_cuda = run_script("setup_runpod.sh", "--skip_install", *common, *train_flags, env=fake_gpu_env)
    assert no_cuda.returncode == 1 and "torch sees no CUDA GPU" in no_cuda.stderr
    assert FAKE_GPU in no_cuda.stdout and "[6/7]" not in no_cuda.stdout  # stopped at the first problem

    # No nvidia-smi on the PATH; pip may not reach an index, so the install step checks what is installed.
    laptop_env = {**fake_gpu_env, "PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1"}
    result = run_script("setup_runpod.sh", *common, "--allow_cpu", *train_flags, env=laptop_env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "warning: nvidia-smi not found; rehearsing on CPU (--allow_cpu)" in result.stdout
    assert "requirements installed; torch kept at" in result.stdout
    assert "warning: torch sees no CUDA GPU" in result.stdout and "Ready." in result.stdout
    report = json.loads((out / "dry_run" / "data_report.json").read_text())
    assert report["split_flow"] == "stratified" and report["group_overlap"] == 0
    assert report["class_weights"] is not None  # --use_class_weights is passed explicitly
    assert {Path(f["path"]).name for f in report["files"] if f["kind"] == "m4"} == {
        f"{d}_{g}.jsonl" for d in demo.DEMO_DOMAINS for g in ("chatGPT", "davinci", "flant5")
    }
    smoke_docs = [json.loads(line) for line in open(out / "smoke" / "splits.jsonl")]
    assert 0 < sum(doc["split"] == "train" for doc in smoke_docs) <= 20  # the CPU default of --smoke_samples
    smoke = json.loads((out / "smoke" / "training_config.json").read_text())
    assert smoke["arguments"]["training"]["max_steps"] == 2
    metrics = json.loads((out / "smoke" / "metrics.json").read_text())
    assert 0.0 <= metrics["document"]["accuracy"] <= 1.0
    assert (out / "smoke" / "config.json").is_file()


# ------------------------------------------------------------------------------------------------------ packaging
def test_no_project_file_edits_the_module_search_path():
    """The modules are installed (`pip install -e .`): every script imports them by name, from any directory; tools/
    is not installed, and what uses it runs as a module from the repository root (`python -m tools.screenshot`)."""
    folders = ("", "bench", "docs", "tests", "tools", "m4_training")
    sources = [path for folder in folders for path in (ROOT / folder).glob("*.py")]
    edits = ("sys." + "path", "PYTHON" + "PATH")  # spelled in two pieces so that this file does not match itself
    offenders = [str(path.relative_to(ROOT)) for path in sources if any(edit in path.read_text() for edit in edits)]
    assert len(sources) > 40
    assert offenders == []


@pytest.mark.parametrize("script", ["bench/prepare.py"])
def test_bench_scripts_import_from_any_directory(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


@pytest.mark.parametrize("module", ["bench.app", "tools.screenshot"])
def test_scripts_using_tools_run_as_modules_from_the_root(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
