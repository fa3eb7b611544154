"""Data preparation time and memory against one raw tokenisation pass, and the cached second run.

    python bench/prepare.py                  # the shared sample, and a synthetic 20x enlargement of it
    python bench/prepare.py --scale 1        # the shared sample only

Preparation = load + de-duplicate + split + chunk (train.py's path, writing the cache). The raw pass tokenises
the same document texts once, in batches of 1000, with no truncation. "cached" is a second preparation with
the same inputs, which reads the cache. Every measurement runs in a fresh process (so peak memory is its own
and the cached run is a real second run); times exclude Python start-up and imports. On a busy machine the
fastest of --repeats runs is reported. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data"))  # sample data, for development
DOMAINS = ("arxiv", "wikipedia", "reddit", "wikihow")
GENERATORS = ("llama2",)
RAW_BATCH = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(SHARED_DATA / "m4_sample"))
    parser.add_argument("--reddit_file", default=str(SHARED_DATA / "reddit" / "reddit_wsb_training.jsonl"))
    parser.add_argument("--tokenizer", default=str(SHARED_DATA / "roberta-base-tokenizer"))
    parser.add_argument("--scale", type=int, default=20, help="also measure a synthetic N-times enlargement (1: off)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (fastest reported)")
    parser.add_argument("--measure", choices=["prepare", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--cache_dir", help=argparse.SUPPRESS)
    return parser


def config_for(data_dir: str, reddit_file: str, cache_dir: str | None):  # noqa: ANN201
    """train.py's own defaults (max_length 512, overlap 50, ...) for the shared sample's stratified split."""
    from m4_training.config import parse_train_args

    return parse_train_args(
        ["--data_dir", data_dir, "--reddit_file", reddit_file, "--train_domains", *DOMAINS,
         "--train_generators", *GENERATORS, "--val_generator", GENERATORS[0], "--stratified_split",
         *(["--cache_dir", cache_dir] if cache_dir else ["--no_cache"])]
    )  # fmt: skip


def measure(options: argparse.Namespace) -> dict:
    """One measurement in this process: seconds of the work, peak RSS, and what it processed."""
    from datasets import disable_progress_bars
    from transformers import AutoTokenizer

    import data_loaders
    from m4_training import data_cache

    disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(options.tokenizer)
    config = config_for(options.data_dir, options.reddit_file, options.cache_dir)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if options.measure == "prepare":
        start = time.perf_counter()
        prepared = data_cache.prepare(config, tokenizer)
        seconds = time.perf_counter() - start
        documents = len(prepared.corpus.documents)
        chunks = len(prepared.train_chunks) + len(prepared.val_chunks)
    else:
        corpus = data_loaders.load_corpus(
            config.data.data_dir, list(DOMAINS), list(GENERATORS), config.data.reddit_file, True
        )
        texts = [doc.text for doc in corpus.documents]
        del corpus
        start = time.perf_counter()
        chunks = 0
        for begin in range(0, len(texts), RAW_BATCH):
            chunks += len(tokenizer(texts[begin : begin + RAW_BATCH])["input_ids"])
        seconds = time.perf_counter() - start
        documents = len(texts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mem_mb": peak_mb, "baseline_mem_mb": baseline_mb, "documents": documents,
            "rows_out": chunks}  # fmt: skip


def run_worker(measure_name: str, data_dir: str, reddit_file: str, tokenizer: str, cache_dir: str) -> dict:
    command = [sys.executable, __file__, "--measure", measure_name, "--data_dir", data_dir,
               "--reddit_file", reddit_file, "--tokenizer", tokenizer, "--cache_dir", cache_dir]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def benchmark(data_dir: str, reddit_file: str, tokenizer: str, repeats: int, workdir: Path) -> dict:
    """Best of `repeats` runs of the first (uncached) preparation, of the raw pass and of the cached run."""
    prepares, raws = [], []
    for attempt in range(repeats):
        cache_dir = workdir / f"cache-{attempt}"
        prepares.append(run_worker("prepare", data_dir, reddit_file, tokenizer, str(cache_dir)))
        raws.append(run_worker("raw", data_dir, reddit_file, tokenizer, str(cache_dir)))
    cached = [run_worker("prepare", data_dir, reddit_file, tokenizer, str(workdir / "cache-0")) for _ in range(repeats)]
    prepare = min(prepares, key=lambda r: r["seconds"])
    raw = min(raws, key=lambda r: r["seconds"])
    cached_best = min(cached, key=lambda r: r["seconds"])
    return {
        "prepare_s": prepare["seconds"],
        "raw_tokenize_s": raw["seconds"],
        "ratio": prepare["seconds"] / raw["seconds"],
        "cached_s": cached_best["seconds"],
        "cache_speedup": prepare["seconds"] / cached_best["seconds"],
        "peak_mem_mb": max(r["peak_mem_mb"] for r in prepares),
        "peak_mem_mb_raw_tokenize": max(r["peak_mem_mb"] for r in raws),
        "peak_mem_mb_cached": max(r["peak_mem_mb"] for r in cached),
        "mem_after_imports_mb": prepare["baseline_mem_mb"],
        "documents": prepare["documents"],
        "chunks": prepare["rows_out"],
        "all_prepare_s": [r["seconds"] for r in prepares],
        "all_raw_tokenize_s": [r["seconds"] for r in raws],
        "all_cached_s": [r["seconds"] for r in cached],
    }


def enlarge(data_dir: str, reddit_file: str, scale: int, target: Path) -> tuple[str, str]:
    """`scale` copies of every selected file's rows, each copy's texts made distinct so none is de-duplicated."""
    import data_loaders

    def tag(copy: int) -> str:  # letters, not digits: digits are normalised away
        return "copy" + "".join(chr(ord("a") + int(d)) for d in str(copy))

    def write(source: Path, destination: Path) -> None:
        with open(source, encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        with open(destination, "w", encoding="utf-8") as handle:
            for copy in range(scale):
                for row in rows:
                    row = dict(row)
                    for key in ("human_text", "machine_text", "text"):
                        if isinstance(row.get(key), str):
                            row[key] = f"{tag(copy)} {row[key]}"
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    (target / "data").mkdir(parents=True)
    for path, _, _ in data_loaders.find_m4_files(Path(data_dir), list(DOMAINS), list(GENERATORS)):
        write(path, target / "data" / path.name)
    write(Path(reddit_file), target / "reddit.jsonl")
    return str(target / "data"), str(target / "reddit.jsonl")


def main() -> None:
    options = build_parser().parse_args()
    if options.measure:
        print(json.dumps(measure(options)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        result = benchmark(options.data_dir, options.reddit_file, options.tokenizer, options.repeats, workdir)
        print(f"original: {json.dumps(result)}", file=sys.stderr)
        if options.scale > 1:
            data_dir, reddit_file = enlarge(options.data_dir, options.reddit_file, options.scale, workdir / "big")
            enlarged = benchmark(data_dir, reddit_file, options.tokenizer, options.repeats, workdir / "big")
            print(f"enlarged {options.scale}x: {json.dumps(enlarged)}", file=sys.stderr)
            result[f"enlarged_{options.scale}x"] = enlarged
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
