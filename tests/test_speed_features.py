"""Speed features keep results exact: dynamic padding, the prepared-data cache, length-grouped sampling."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import ROOT, write_jsonl
from torch.utils.data import RandomSampler
from transformers import AutoTokenizer

import chunking
import train
from m4_training import data_cache, modeling
from m4_training.train_args import parse_train_args
from weighted_trainer import WeightedTrainer

# ----------------------------------------------------------------------------------------- dynamic padding


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_dynamic_padding_gives_the_loss_of_padding_to_512(tiny_model_dir, tiny_tokenizer, attn_implementation):
    texts = ["short text", "a somewhat longer text " * 6, "the longest text of this batch, " * 12]
    features = [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": label, "doc_id": i, "length": len(ids)}
        for i, (ids, label) in enumerate(zip(tiny_tokenizer(texts)["input_ids"], [0, 1, 1]))
    ]
    longest = max(f["length"] for f in features)
    dynamic_collator = chunking.chunk_collator(tiny_tokenizer, 512, pad_to_multiple_of=8, pad_to_max_length=False)
    dynamic = dynamic_collator(features)
    fixed = chunking.chunk_collator(tiny_tokenizer, 512, pad_to_multiple_of=8, pad_to_max_length=True)(features)
    assert fixed["input_ids"].shape == (3, 512)
    assert dynamic["input_ids"].shape[1] == -(-longest // 8) * 8 < 512
    assert {"input_ids", "attention_mask", "labels"} <= set(dynamic) and not {"doc_id", "length"} & set(dynamic)

    model = modeling.load_model(str(tiny_model_dir), 0.1, attn_implementation).eval()
    with torch.no_grad():
        out_dynamic = model(**dynamic)
        out_fixed = model(**fixed)
    torch.testing.assert_close(out_dynamic.logits, out_fixed.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_dynamic.loss, out_fixed.loss, atol=1e-6, rtol=1e-6)
    # Padding really is masked: a batch of one chunk gives that chunk's logits.
    alone = dynamic_collator(features[:1])
    with torch.no_grad():
        torch.testing.assert_close(model(**alone).logits[0], out_fixed.logits[0], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------- cache


@pytest.fixture()
def small_data(tmp_path):
    """Two M4 files sharing human texts plus a Reddit file: small enough to prepare in well under a second."""
    data_dir = tmp_path / "data"
    for generator in ("chatGPT", "flant5"):
        write_jsonl(
            data_dir / f"arxiv_{generator}.jsonl",
            [
                {"human_text": f"Human abstract number {i} about topic {i % 3}. " * (1 + i % 4),
                 "machine_text": f"Machine text {i} by {generator}, with digits {i * 7}. " * (1 + i % 5)}
                for i in range(12)
            ],
        )  # fmt: skip
    # Not read by default; here so that a variant can ask for a second domain that exists.
    write_jsonl(data_dir / "wikipedia_chatGPT.jsonl", [{"human_text": "A wiki text.", "machine_text": "Machine."}])
    reddit = write_jsonl(tmp_path / "reddit.jsonl", [{"text": f"post {i} lol " * (2 + i)} for i in range(10)])
    return data_dir, reddit


def small_settings(small_data, *extra: str):
    data_dir, reddit = small_data
    return train.data_settings(parse_train_args(
        ["--data_dir", str(data_dir), "--train_domains", "arxiv", "--train_generators", "chatGPT", "flant5",
         "--reddit_file", str(reddit), "--stratified_split", "--validation_split", "0.25", "--max_length", "32",
         "--chunk_overlap", "4", *extra]
    ))  # fmt: skip


def test_cache_key_changes_with_every_setting_file_and_tokenizer(
    small_data, tiny_tokenizer, tiny_model_dir, tmp_path, monkeypatch
):
    settings = small_settings(small_data)
    key = data_cache.cache_key(settings, tiny_tokenizer)
    assert data_cache.cache_key(small_settings(small_data, "--num_proc", "1", "--no_cache", "--lr", "1"),
                                tiny_tokenizer) == key  # fmt: skip

    other_dir = tmp_path / "copy_of_data"
    shutil.copytree(settings.data_dir, other_dir)
    variants = {
        "data_dir": ["--data_dir", str(other_dir)],
        "train_domains": ["--train_domains", "arxiv", "wikipedia"],
        "train_generators": ["--train_generators", "chatGPT"],
        "reddit_file": ["--reddit_file", "none"],
        "normalize_digits": ["--no_normalize_digits"],
        "text_normalization": ["--no_text_normalization"],
        "stratified_split": ["--stratified_split", "false"],
        "validation_split": ["--validation_split", "0.3"],
        "val_generator": ["--val_generator", "chatGPT"],
        "val_domain": ["--stratified_split", "false", "--val_domain", "arxiv"],
        "reddit_val_fraction": ["--reddit_val_fraction", "0.2"],
        "seed": ["--seed", "7"],
        "max_train_samples": ["--max_train_samples", "10"],
        "max_val_samples": ["--max_val_samples", "5"],
        "augment_attacks": ["--augment_attacks", "homoglyph"],
        "augment_rate": ["--augment_rate", "0.5"],
        "max_length": ["--max_length", "64"],
        "chunk_overlap": ["--chunk_overlap", "8"],
    }
    assert set(variants) == set(data_cache.preparation_settings(settings)), "every setting needs a variant here"
    keys = {name: data_cache.cache_key(small_settings(small_data, *flags), tiny_tokenizer)
            for name, flags in variants.items()}  # fmt: skip
    assert key not in keys.values()
    assert len(set(keys.values())) == len(variants)

    # One byte of one data file, same size and path.
    path = next(iter(sorted((tmp_path / "data").glob("*.jsonl"))))
    content = path.read_bytes()
    path.write_bytes(content.replace(b"number 3 ", b"number 4 ", 1))
    assert path.stat().st_size == len(content)
    assert data_cache.cache_key(settings, tiny_tokenizer) not in {key, *keys.values()}
    path.write_bytes(content)
    assert data_cache.cache_key(settings, tiny_tokenizer) == key

    # A tokenizer with one more token; and a call that changes truncation state does not matter.
    tiny_tokenizer("x " * 500, truncation=True, max_length=20, stride=3, return_overflowing_tokens=True)
    assert data_cache.cache_key(settings, tiny_tokenizer) == key
    grown = AutoTokenizer.from_pretrained(tiny_model_dir)
    grown.add_tokens(["brandnewtoken"])
    assert data_cache.cache_key(settings, grown) != key

    # One changed line in any of the code that prepares the data.
    code_root = tmp_path / "code"
    for name in data_cache.CODE_FILES:
        (code_root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, code_root / name)
    monkeypatch.setattr(data_cache, "ROOT", code_root)
    assert data_cache.cache_key(settings, tiny_tokenizer) == key
    with open(code_root / "chunking.py", "a") as handle:
        handle.write("# a change\n")
    assert data_cache.cache_key(settings, tiny_tokenizer) != key


def test_cache_is_identical_and_rebuilt_when_data_changes(small_data, tiny_tokenizer, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    settings = small_settings(small_data, "--cache_dir", str(cache_dir))
    first = data_cache.prepare(settings, tiny_tokenizer)
    uncached = data_cache.prepare(small_settings(small_data, "--no_cache"), tiny_tokenizer)
    assert len(list(cache_dir.iterdir())) == 1

    def must_not_build(*args, **kwargs):
        raise AssertionError("a cached run prepared the data again")

    with monkeypatch.context() as patch:
        patch.setattr(data_cache, "build", must_not_build)
        second = data_cache.prepare(settings, tiny_tokenizer)
    for result in (first, second):
        for side in ("train_chunks", "val_chunks"):
            assert getattr(result, side).to_dict() == getattr(uncached, side).to_dict()
        assert [dataclasses.asdict(d) for d in result.corpus.documents] == [
            dataclasses.asdict(d) for d in uncached.corpus.documents
        ]
        assert [d.doc_id for d in result.split.val] == [d.doc_id for d in uncached.split.val]
        by_id = {d.doc_id: d for d in result.corpus.documents}
        assert all(by_id[d.doc_id] is d for d in result.split.train + result.split.val)
    assert len(first.train_chunks) > 0 and first.train_chunks.cache_files  # memory-mapped from the cache
    (entry,) = cache_dir.iterdir()
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*.arrow")) == [
        "chunks/train/data-00000-of-00001.arrow",  # the chunks once: chunking's own files are gone
        "chunks/val/data-00000-of-00001.arrow",
    ]

    write_jsonl(tmp_path / "reddit.jsonl", [{"text": f"post {i} lol " * (2 + i)} for i in range(14)])
    changed = data_cache.prepare(settings, tiny_tokenizer)
    assert len(list(cache_dir.iterdir())) == 2
    assert len(changed.corpus.documents) == len(first.corpus.documents) + 4


def test_num_proc_prepares_the_same_chunks(small_data, tiny_tokenizer, tmp_path, monkeypatch):
    """Tokenising in 2 processes (each writing its own Arrow shard) gives the chunks of one process."""
    single = data_cache.prepare(small_settings(small_data, "--no_cache"), tiny_tokenizer)
    multi_settings = small_settings(small_data, "--cache_dir", str(tmp_path / "cache"), "--num_proc", "2")
    build, shards = data_cache.build, []

    def counting_build(*args, **kwargs):
        built = build(*args, **kwargs)
        shards.append(len(built.train_chunks.cache_files))
        return built

    monkeypatch.setattr(data_cache, "build", counting_build)
    multi = data_cache.prepare(multi_settings, tiny_tokenizer)
    assert shards == [2]
    reread = data_cache.prepare(multi_settings, tiny_tokenizer)
    for result in (multi, reread):
        for side in ("train_chunks", "val_chunks"):
            assert getattr(result, side).to_dict() == getattr(single, side).to_dict()


def demo_argv(demo_inputs, output_dir, *extra: str) -> list[str]:
    data_dir, reddit_file, model_dir = demo_inputs
    return ["--data_dir", str(data_dir), "--reddit_file", str(reddit_file), "--model", str(model_dir),
            "--train_domains", "arxiv", "wikipedia", "reddit",
            "--train_generators", "chatGPT", "davinci", "dolly", "flant5",
            "--output_dir", str(output_dir), "--max_length", "128", "--chunk_overlap", "16",
            "--use_class_weights", "--stratified_split", *extra]  # fmt: skip


def test_cached_dry_run_writes_identical_reports(demo_inputs, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    assert train.main(demo_argv(demo_inputs, tmp_path / "a", "--dry_run", "--cache_dir", cache)) == 0
    monkeypatch.setattr(data_cache, "build", lambda *a, **k: pytest.fail("cached run prepared the data again"))
    assert train.main(demo_argv(demo_inputs, tmp_path / "b", "--dry_run", "--cache_dir", cache)) == 0
    for name in ("data_report.json", "splits.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    report = json.loads((tmp_path / "b" / "data_report.json").read_text())
    assert sum(report["chunks"]["train"].values()) > 0 and report["class_weights"]["machine"] > 0


# ----------------------------------------------------------------------------------------- sampling


def test_group_by_length_visits_every_chunk_once_per_epoch(demo_inputs, tiny_tokenizer, tmp_path):
    config = parse_train_args(demo_argv(demo_inputs, tmp_path / "out", "--no_cache", "--batch_size", "4"))
    data = train.prepare_data(config, tiny_tokenizer)
    model = modeling.load_model(config.model.model, config.model.dropout)
    trainer = train.build_trainer(config, model, tiny_tokenizer, data)
    lengths = chunking.column_array(data.train_chunks, "length")
    n = len(lengths)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler.lengths, list) and len(sampler) == n
    epochs = [list(sampler) for _ in range(2)]
    for order in epochs:
        assert sorted(order) == list(range(n))
    assert epochs[0] != epochs[1]
    # Through the real dataloader: every chunk's tokens arrive exactly once, in batches of similar lengths.
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    assert sum(len(b["labels"]) for b in batches) == n
    assert sum(int(b["attention_mask"].sum()) for b in batches) == int(lengths.sum())
    padded = sum(b["input_ids"].numel() for b in batches)
    random_order = np.random.default_rng(0).permutation(lengths)
    random_batches = np.array_split(random_order, len(batches))
    random_padded = sum(-(-int(batch.max()) // 8) * 8 * len(batch) for batch in random_batches)
    assert padded < random_padded

    off = parse_train_args(demo_argv(demo_inputs, tmp_path / "out", "--no_group_by_length", "--pad_to_max_length"))
    trainer_off = train.build_trainer(off, model, tiny_tokenizer, data)
    assert isinstance(trainer_off._get_train_sampler(), RandomSampler)
    assert next(iter(trainer_off.get_train_dataloader()))["input_ids"].shape[1] == 128


def test_the_private_sampler_hooks_still_exist():
    """WeightedTrainer hands the length-grouped sampler its lengths through two private Trainer methods; if
    transformers renames them, length grouping silently becomes slow again: fail here instead."""
    for name in ("_get_train_sampler", "_get_eval_sampler"):
        assert name in vars(WeightedTrainer), name
        assert callable(getattr(super(WeightedTrainer, WeightedTrainer), name, None)), (
            f"transformers.Trainer.{name} is gone: update WeightedTrainer's length-grouping hooks"
        )


def test_tokenizer_threads_are_kept_for_preparation_and_quieted_only_for_forked_workers(
    demo_inputs, tiny_tokenizer, tmp_path, monkeypatch
):
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    config = parse_train_args(demo_argv(demo_inputs, tmp_path / "out", "--no_cache", "--dataloader_num_workers", "2"))
    assert config.training.dataloader_num_workers == 2 and config.training.dataloader_persistent_workers
    data = train.prepare_data(config, tiny_tokenizer)
    assert "TOKENIZERS_PARALLELISM" not in os.environ  # preparation ran with the tokenizer's thread pool
    train.build_trainer(config, modeling.load_model(config.model.model, None), tiny_tokenizer, data)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert parse_train_args([]).training.dataloader_num_workers == 0  # CPU default
    assert "TOKENIZERS_PARALLELISM" not in (ROOT / "setup_runpod.sh").read_text()
