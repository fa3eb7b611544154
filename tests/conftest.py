"""Shared fixtures: the generated demo sample and tiny model, and the optional ../shared/data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import demo  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"


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
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def roberta_tokenizer(shared_data):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(shared_data / "roberta-base-tokenizer")
