"""The rewrites that keep preparation linear in the corpus size give the results of the straightforward code.

Timing targets are checked by bench/prepare.py --curve, not here.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
from conftest import ROOT

import chunking
import data_loaders as dl
import train
from m4_training import cyclic_gc, data_cache, reports, splits
from m4_training.train_args import parse_train_args

# Every code point a Python string can hold and UTF-8 can encode (the surrogates cannot be).
ALL_CODE_POINTS = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


@pytest.mark.parametrize(
    "text",
    [
        "".join(map(chr, range(128))) + " 2024 x9 0.5e10",
        ALL_CODE_POINTS,
        "Arabic-Indic \u0663\u0664, fullwidth \uff15, Devanagari \u0967, superscript \u00b2 (not a decimal digit) 42",
    ],
    ids=["ascii", "every_code_point", "mixed_scripts"],
)
def test_digit_normalisation_equals_the_regex(text):
    reference = re.sub(r"\d", "0", " ".join(text.split()))
    assert dl.normalize_text(text, dl.TextNormalization(True, False)) == reference
    assert dl.normalize_text(text, dl.TextNormalization(False, False)) == " ".join(text.split())


def test_paused_collector_is_restored_on_exit_error_and_nesting():
    assert gc.isenabled()
    with cyclic_gc.paused():
        assert not gc.isenabled()
        with cyclic_gc.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block leaves it to the outer one
    assert gc.isenabled()
    with pytest.raises(ValueError), cyclic_gc.paused():
        raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with cyclic_gc.paused():
            pass
        assert not gc.isenabled()  # a collector the caller had disabled stays disabled
    finally:
        gc.enable()


def test_preparation_runs_with_the_collector_paused(monkeypatch, tmp_path):
    states = []
    monkeypatch.setattr(data_cache, "build", lambda settings, tokenizer: states.append(gc.isenabled()) or "built")
    config = parse_train_args(["--no_cache", "--output_dir", str(tmp_path)])
    assert data_cache.prepare(train.data_settings(config), None) == "built"
    assert states == [False] and gc.isenabled()


def test_texts_handed_to_arrow_keep_no_utf8_copy():
    texts = ["plain ascii", "caf\u00e9 na\u00efve", "emoji \U0001f600 and \u201cquotes\u201d"]
    sizes = [sys.getsizeof(text) for text in texts]
    dataset = chunking.text_dataset(texts)
    assert dataset["text"] == texts
    assert [sys.getsizeof(text) for text in texts] == sizes


def random_corpus(seed: int, n_rows: int = 600) -> dl.Corpus:
    """M4-like groups (a human text and machine texts of several generators) in three domains, plus Reddit posts."""
    rng = random.Random(seed)
    files = [dl.FileReport(path="m4.jsonl", kind="m4"), dl.FileReport(path="reddit.jsonl", kind="reddit")]
    documents = []

    def add(label, domain, generator, file, group_id):
        source = {"file": file, "line": len(documents) + 1, "field": "text"}
        doc_id = len(documents)
        documents.append(dl.Document(doc_id, f"text {doc_id}", label, domain, generator, [source], group_id))

    for _ in range(n_rows):
        domain = rng.choice(["arxiv", "reddit", "wikipedia"])
        group_id = len(documents)
        if rng.random() < 0.9:
            add(dl.HUMAN, domain, dl.HUMAN_GENERATOR, "m4.jsonl", group_id)
        for generator in rng.sample(["chatgpt", "cohere", "davinci", "flant5"], rng.randint(0, 3)):
            add(dl.MACHINE, domain, generator, "m4.jsonl", group_id)
    for _ in range(n_rows // 3):
        add(dl.HUMAN, "reddit_posts", dl.HUMAN_GENERATOR, "reddit.jsonl", len(documents))
    generators = {domain: ["chatgpt", "cohere", "davinci", "flant5"] for domain in ("arxiv", "reddit", "wikipedia")}
    return dl.Corpus(documents=documents, files=files, generators_by_domain=generators)


def validation_groups_by_scanning_every_domain(corpus, val_generator, validation_split, seed):
    """The hold-out's choice of M4 validation groups, one scan of all groups per domain (the code before)."""
    rng = random.Random(seed)
    groups = splits._groups(corpus.documents)
    m4_group_ids = [gid for gid, members in groups.items() if any(corpus.from_m4(doc) for doc in members)]
    chosen = set()
    for domain in sorted({groups[gid][0].domain for gid in m4_group_ids}):
        in_domain = [gid for gid in m4_group_ids if groups[gid][0].domain == domain]
        candidates = [gid for gid in in_domain if any(d.generator == val_generator for d in groups[gid])]
        n_val_groups = max(1, round(validation_split * len(in_domain)))
        chosen.update(rng.sample(candidates, n_val_groups) if len(candidates) > n_val_groups else candidates)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generator_holdout_chooses_the_groups_of_a_scan_per_domain(seed):
    corpus = random_corpus(seed)
    split = splits.generator_holdout_split(corpus, "cohere", 0.2, 0.1, seed)
    m4_val_groups = {doc.group_id for doc in split.val if corpus.from_m4(doc)}
    expected = validation_groups_by_scanning_every_domain(corpus, "cohere", 0.2, seed)
    assert len(expected) > 10 and m4_val_groups == expected


def test_counts_by_value_equal_a_scan_per_value():
    documents = random_corpus(3).documents
    for attribute in ("domain", "generator"):
        values = sorted({getattr(doc, attribute) for doc in documents})
        expected = {
            value: {
                "human": sum(1 for d in documents if getattr(d, attribute) == value and d.label == dl.HUMAN),
                "machine": sum(1 for d in documents if getattr(d, attribute) == value and d.label == dl.MACHINE),
            }
            for value in values
        }
        counted = reports._counts_by(documents, attribute)
        assert counted == expected and list(counted) == values
        assert sum(c["human"] + c["machine"] for c in counted.values()) == len(documents)
    assert Counter(doc.domain for doc in documents)["reddit_posts"] == 200


def load_bench_prepare():
    spec = importlib.util.spec_from_file_location("bench_prepare", ROOT / "bench" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fits_the_scaling_exponent():
    bench = load_bench_prepare()
    documents = [2_000, 40_000, 160_000, 400_000]
    assert bench.fitted_exponent(documents, [3e-5 * n for n in documents]) == pytest.approx(1.0)
    assert bench.fitted_exponent(documents, [1e-9 * n**2 for n in documents]) == pytest.approx(2.0)
    # A negative overhead (preparation faster than the raw pass) has no logarithm and is left out.
    assert bench.fitted_exponent(documents, [-1.0, 0.4, 1.6, 4.0]) == pytest.approx(1.0)
    assert bench.fitted_exponent(documents, [-1.0, -0.5, 1.0, -2.0]) is None


def test_predict_scaling_bench_measures_every_stage_of_predict(tmp_path):
    """The bench drives predict.py's own functions: a change to their signatures must fail here, not on a pod."""
    bench = str(ROOT / "bench" / "predict_scaling.py")
    command = [sys.executable, bench, "--documents", "300", "900", "--repeats", "1"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert [measured["sizes"][size]["documents"] for size in ("300", "900")] == [300, 900]
    for size in measured["sizes"].values():
        assert size["chunks"] >= size["documents"]
        assert set(size["seconds"]) == {"read", "aggregate", "output", "evaluate"}
        assert 0.3 < size["auroc"] < 0.7  # made-up probabilities: no better than chance
    assert set(measured["exponents"]) == {f"{stage}{suffix}" for stage in size["seconds"] for suffix in ("", "_cpu")}
