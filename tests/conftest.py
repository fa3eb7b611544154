"""Shared fixtures: the generated demo sample and tiny model, and the optional ../shared/data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The prepared-data cache (train.py --cache_dir defaults under it) goes to a throwaway place, not the user's.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="m4-tests-hf-datasets-"))

from m4_training import demo  # noqa: E402

# Sample data beside the project (for development and CI only); tests that need it skip cleanly without it.
SHARED_DATA = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data"))


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows may be dicts (written as JSON) or raw str/bytes lines (written as given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for row in rows:
            if isinstance(row, bytes):
                handle.write(row + b"\n")
            elif isinstance(row, str):
                handle.write(row.encode("utf-8") + b"\n")
            else:
                handle.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    return path


def read_jsonl(path: Path | str) -> list:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def raw_text(source: dict) -> str:
    """The text a (file, line, field) source of splits.jsonl points at, read straight from the file."""
    with open(source["file"], "rb") as handle:
        line = handle.readlines()[source["line"] - 1]
    value = json.loads(line.decode("utf-8-sig"))[source["field"]]
    return "\n\n".join(value) if isinstance(value, list) else value


def tiny_train_args(demo_inputs: tuple, output_dir: Path, *extra: str) -> list[str]:
    """train.py arguments for a few-second run on the demo sample and tiny model (later flags win)."""
    data_dir, reddit_file, model_dir = demo_inputs
    return [
        "--data_dir", str(data_dir),
        "--reddit_file", str(reddit_file),
        "--model", str(model_dir),
        "--train_domains", *demo.DEMO_DOMAINS,
        "--train_generators", *demo.DEMO_GENERATOR_FILES,
        "--max_length", "64",
        "--chunk_overlap", "8",
        "--max_train_samples", "64",
        "--max_val_samples", "40",
        "--batch_size", "8",
        "--lr", "1e-3",
        "--epochs", "1",
        "--logging_steps", "5",
        "--use_class_weights",
        "--output_dir", str(output_dir),
        *extra,
    ]  # fmt: skip


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one torch thread avoids OpenMP spin contention (10x slowdowns)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory):
    """(data_dir, reddit_file, model_dir) of the generated demo sample and tiny model."""
    return demo.prepare_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def tiny_model_dir(demo_inputs):
    return demo_inputs[2]


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """Output directory of one `python train.py --demo` run (model, reports, demo_inputs/), shared by the session.

    Run as a user runs it: its own process, the demo's own settings; what it printed is kept beside the output
    directory (`demo_terminal`).
    """
    output_dir = tmp_path_factory.mktemp("demo_run") / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)  # the demo chooses its own thread count
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--demo", "--output_dir", str(output_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    (output_dir.parent / "terminal.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


@pytest.fixture(scope="session")
def demo_terminal(demo_run):
    """Everything `python train.py --demo` printed (stdout, then stderr)."""
    return (demo_run.parent / "terminal.log").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no sample data at {SHARED_DATA} (set M4_SHARED_DATA to its directory)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def roberta_tokenizer(shared_data):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(shared_data / "roberta-base-tokenizer")
