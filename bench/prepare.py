"""Data preparation time and memory against one raw tokenisation pass, and the cached second run.

    python bench/prepare.py                  # the shared sample, and a synthetic 20x enlargement of it
    python bench/prepare.py --scale 1        # the shared sample only
    python bench/prepare.py --curve          # 1x, 20x, 80x, 200x: table and fitted scaling exponents
    python bench/prepare.py --train_flags --no_text_normalization   # preparation without canonicalisation

Preparation = the whole data stage of train.py (`train.prepare_data`): load + de-duplicate + group + split +
chunk + cache write (`data_cache.prepare`), then class weights, the data report, per-document token counts and
writing data_report.json, splits.jsonl and dropped_documents.jsonl; `cache_prepare_s` is the
`data_cache.prepare` part of it and `main_thread_cpu_s` the CPU time of the Python thread (the tokenizer
encodes on threads of its own, so this is the work outside tokenisation, and it is much less disturbed by
other jobs than wall time). `cpu_ratio` compares the CPU time of all threads of the two processes: a check of
`ratio` when other jobs share the machine. The raw pass tokenises the same document texts once, in batches of
1000, with no truncation. "cached" is a second preparation with the same inputs, which reads the cache. Every
measurement runs in a fresh process (so peak memory is its own and the cached run is a real second run); times
exclude Python start-up and imports. On a busy machine the fastest of --repeats runs is reported.

--curve fits `seconds = c * documents ** k` by least squares on logarithms for the overhead (prepare minus the
raw pass; only where positive) and for the main-thread CPU time; k <= 1.1 means preparation grows linearly.
Memory is reported as peak RSS over the imports per 1,000 documents, and as the increase from one scale to the
next per 1,000 added documents (constant when memory grows linearly). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_FLAGS_VARIABLE = "BENCH_PREPARE_TRAIN_FLAGS"  # --train_flags, handed to the measurement processes
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data"))  # sample data, for development
DOMAINS = ("arxiv", "wikipedia", "reddit", "wikihow")
GENERATORS = ("llama2",)
RAW_BATCH = 1000
CURVE_SCALES = (1, 20, 80, 200)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(SHARED_DATA / "m4_sample"))
    parser.add_argument("--reddit_file", default=str(SHARED_DATA / "reddit" / "reddit_wsb_training.jsonl"))
    parser.add_argument("--tokenizer", default=str(SHARED_DATA / "roberta-base-tokenizer"))
    parser.add_argument("--scale", type=int, default=20, help="also measure a synthetic N-times enlargement (1: off)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (fastest reported)")
    parser.add_argument("--curve", action="store_true", help="measure --curve_scales and fit scaling exponents")
    parser.add_argument("--curve_scales", type=int, nargs="+", default=list(CURVE_SCALES), help="scales of --curve")
    parser.add_argument(
        "--large_scale", type=int, default=200, help="with --curve, scales from this one up run --large_repeats times"
    )
    parser.add_argument("--large_repeats", type=int, default=1, help="runs per measurement at --large_scale and up")
    parser.add_argument(
        "--train_flags", nargs=argparse.REMAINDER, default=[],
        help="last: train.py flags for the preparation, e.g. --train_flags --no_text_normalization",
    )  # fmt: skip
    parser.add_argument("--measure", choices=["prepare", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--cache_dir", help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", help=argparse.SUPPRESS)
    return parser


def config_for(data_dir: str, reddit_file: str, cache_dir: str | None, tokenizer: str, output_dir: str):  # noqa: ANN201
    """train.py's own defaults (max_length 512, overlap 50, ...) for the shared sample's stratified split."""
    from m4_training.train_args import parse_train_args

    return parse_train_args(
        ["--data_dir", data_dir, "--reddit_file", reddit_file, "--train_domains", *DOMAINS,
         "--train_generators", *GENERATORS, "--val_generator", GENERATORS[0], "--stratified_split",
         "--use_class_weights", "--model", tokenizer, "--output_dir", output_dir,
         *(["--cache_dir", cache_dir] if cache_dir else ["--no_cache"]),
         *json.loads(os.environ.get(TRAIN_FLAGS_VARIABLE, "[]"))]
    )  # fmt: skip


class CollectorLog:
    """A `gc.callbacks` entry: collections run by the cyclic garbage collector, per generation, and their time."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.counts[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._started


def measure(options: argparse.Namespace) -> dict:
    """One measurement in this process: seconds of the work, peak RSS, and what it processed."""
    from datasets import disable_progress_bars
    from transformers import AutoTokenizer

    import data_loaders
    import train
    from m4_training import data_cache

    disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(options.tokenizer)
    output_dir = options.output_dir or tempfile.mkdtemp(prefix="bench-prepare-run-")
    config = config_for(options.data_dir, options.reddit_file, options.cache_dir, options.tokenizer, output_dir)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {}
    if options.measure == "prepare":
        cache_prepare = data_cache.prepare
        cache_seconds = []

        def timed_cache_prepare(*args: object) -> data_cache.PreparedChunks:
            start = time.perf_counter()
            prepared = cache_prepare(*args)
            cache_seconds.append(time.perf_counter() - start)
            return prepared

        data_cache.prepare = timed_cache_prepare  # train.prepare_data calls it through the module
        collections = CollectorLog()
        gc.callbacks.append(collections)
        start_cpu, start_process_cpu, start = time.thread_time(), time.process_time(), time.perf_counter()
        prepared = train.prepare_data(config, tokenizer).prepared
        seconds = time.perf_counter() - start
        gc.callbacks.remove(collections)
        result = {
            "cache_prepare_s": sum(cache_seconds),
            "process_cpu_s": time.process_time() - start_process_cpu,
            "main_thread_cpu_s": time.thread_time() - start_cpu,
            "gc_collections_by_generation": collections.counts,
            "gc_s": collections.seconds,
        }
        documents = len(prepared.corpus.documents)
        chunks = len(prepared.train_chunks) + len(prepared.val_chunks)
        if not options.output_dir:
            shutil.rmtree(output_dir, ignore_errors=True)
    else:
        corpus = data_loaders.load_corpus(
            config.data.data_dir,
            list(DOMAINS),
            list(GENERATORS),
            config.data.reddit_file,
            data_loaders.TextNormalization(config.data.normalize_digits, config.data.text_normalization),
        )
        texts = [doc.text for doc in corpus.documents]
        del corpus
        start_process_cpu, start = time.process_time(), time.perf_counter()
        chunks = 0
        for begin in range(0, len(texts), RAW_BATCH):
            chunks += len(tokenizer(texts[begin : begin + RAW_BATCH])["input_ids"])
        seconds = time.perf_counter() - start
        result = {"process_cpu_s": time.process_time() - start_process_cpu}
        documents = len(texts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result | {"seconds": seconds, "peak_mem_mb": peak_mb, "baseline_mem_mb": baseline_mb,
                     "documents": documents, "rows_out": chunks}  # fmt: skip


def measurement_output(command: list[str]) -> dict:
    """The JSON object a measurement process prints last; its error output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: the measurement process failed (exit {result.returncode}): {' '.join(command[1:])}\n"
                 f"{result.stderr[-4000:]}")  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_worker(measure_name: str, data_dir: str, reddit_file: str, tokenizer: str, cache_dir: str) -> dict:
    command = [sys.executable, __file__, "--measure", measure_name, "--data_dir", data_dir,
               "--reddit_file", reddit_file, "--tokenizer", tokenizer, "--cache_dir", cache_dir,
               "--output_dir", f"{cache_dir}-run"]  # fmt: skip
    measured = measurement_output(command)
    shutil.rmtree(f"{cache_dir}-run", ignore_errors=True)
    return measured


def benchmark(data_dir: str, reddit_file: str, tokenizer: str, repeats: int, workdir: Path) -> dict:
    """Best of `repeats` runs of the first (uncached) preparation, of the raw pass and of the cached run."""
    prepares, raws = [], []
    for attempt in range(repeats):
        cache_dir = workdir / f"cache-{attempt}"
        prepares.append(run_worker("prepare", data_dir, reddit_file, tokenizer, str(cache_dir)))
        raws.append(run_worker("raw", data_dir, reddit_file, tokenizer, str(cache_dir)))
        if attempt:  # only the first entry is read again by the cached runs
            shutil.rmtree(cache_dir, ignore_errors=True)
    cached = [run_worker("prepare", data_dir, reddit_file, tokenizer, str(workdir / "cache-0")) for _ in range(repeats)]
    shutil.rmtree(workdir / "cache-0", ignore_errors=True)
    prepare = min(prepares, key=lambda r: r["seconds"])
    raw = min(raws, key=lambda r: r["seconds"])
    cached_best = min(cached, key=lambda r: r["seconds"])
    return {
        "prepare_s": prepare["seconds"],
        "cache_prepare_s": prepare["cache_prepare_s"],
        "reports_s": prepare["seconds"] - prepare["cache_prepare_s"],
        "main_thread_cpu_s": min(r["main_thread_cpu_s"] for r in prepares),
        "gc_s": prepare["gc_s"],
        "gc_collections_by_generation": prepare["gc_collections_by_generation"],
        "raw_tokenize_s": raw["seconds"],
        "ratio": prepare["seconds"] / raw["seconds"],
        "overhead_s": prepare["seconds"] - raw["seconds"],
        "cpu_ratio": min(r["process_cpu_s"] for r in prepares) / min(r["process_cpu_s"] for r in raws),
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


def fitted_exponent(documents: list[int], seconds: list[float]) -> float | None:
    """k of seconds = c * documents ** k, least squares on logarithms; None without two positive points."""
    points = [(math.log(n), math.log(s)) for n, s in zip(documents, seconds) if s > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def curve_summary(rows: dict[int, dict]) -> dict:
    """Exponents of the overhead and of the main-thread CPU time, and memory per 1,000 documents."""
    scales = sorted(rows)
    documents = [rows[s]["documents"] for s in scales]
    summary = {
        "overhead_exponent": fitted_exponent(documents, [rows[s]["overhead_s"] for s in scales]),
        "overhead_exponent_from_20x": fitted_exponent(
            [rows[s]["documents"] for s in scales if s >= 20], [rows[s]["overhead_s"] for s in scales if s >= 20]
        ),
        "main_thread_cpu_exponent": fitted_exponent(documents, [rows[s]["main_thread_cpu_s"] for s in scales]),
        "max_ratio": max(rows[s]["ratio"] for s in scales),
        "max_cpu_ratio": max(rows[s]["cpu_ratio"] for s in scales),
    }
    for previous, scale in zip(scales, scales[1:]):
        added = rows[scale]["documents"] - rows[previous]["documents"]
        grown = rows[scale]["peak_mem_mb"] - rows[previous]["peak_mem_mb"]
        rows[scale]["mb_per_1000_added_documents"] = 1000 * grown / added
    return summary


def format_curve(rows: dict[int, dict], summary: dict) -> str:
    from m4_training.reports import format_table

    header = ["scale", "documents", "chunks", "prepare_s", "of it reports_s", "raw_tokenize_s", "ratio",
              "overhead_s", "CPU ratio", "main_thread_cpu_s", "peak_MB_over_imports", "MB/1000 docs",
              "MB/1000 added docs"]  # fmt: skip
    table = [
        [f"{scale}x", row["documents"], row["chunks"], row["prepare_s"], row["reports_s"], row["raw_tokenize_s"],
         row["ratio"], row["overhead_s"], row["cpu_ratio"], row["main_thread_cpu_s"],
         round(row["peak_mem_over_imports_mb"]),
         row["mb_per_1000_documents"], row.get("mb_per_1000_added_documents")]
        for scale, row in sorted(rows.items())
    ]  # fmt: skip

    def exponent(value: float | None) -> str:
        return "undefined (overhead not positive at two scales)" if value is None else f"{value:.3f}"

    return "\n".join([
        format_table(header, table, markdown=True),
        "",
        f"fitted exponent of the overhead (prepare - raw) vs documents, all scales: "
        f"{exponent(summary['overhead_exponent'])}; from 20x: {exponent(summary['overhead_exponent_from_20x'])}",
        f"fitted exponent of the main-thread CPU time vs documents: {exponent(summary['main_thread_cpu_exponent'])}",
        f"largest ratio prepare / raw: {summary['max_ratio']:.3f} (wall), {summary['max_cpu_ratio']:.3f} (CPU)",
    ])  # fmt: skip


def run_curve(options: argparse.Namespace, workdir: Path) -> dict:
    rows = {}
    for scale in sorted(options.curve_scales):
        repeats = options.large_repeats if scale >= options.large_scale else options.repeats
        scale_dir = workdir / f"x{scale}"
        if scale == 1:
            data_dir, reddit_file = options.data_dir, options.reddit_file
        else:
            data_dir, reddit_file = enlarge(options.data_dir, options.reddit_file, scale, scale_dir)
            os.sync()  # the enlarged files' write-back is not charged to the first measurement
        row = benchmark(data_dir, reddit_file, options.tokenizer, repeats, scale_dir)
        row["repeats"] = repeats
        row["peak_mem_over_imports_mb"] = row["peak_mem_mb"] - row["mem_after_imports_mb"]
        row["mb_per_1000_documents"] = 1000 * row["peak_mem_over_imports_mb"] / row["documents"]
        rows[scale] = row
        print(f"{scale}x: {json.dumps(row)}", file=sys.stderr, flush=True)
        shutil.rmtree(scale_dir, ignore_errors=True)
    summary = curve_summary(rows)
    print(format_curve(rows, summary), file=sys.stderr)
    return {"curve": {f"{scale}x": row for scale, row in rows.items()}, **summary}


def main() -> None:
    options = build_parser().parse_args()
    if options.measure:
        print(json.dumps(measure(options)))
        return
    os.environ[TRAIN_FLAGS_VARIABLE] = json.dumps(options.train_flags)
    workdir = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    if options.curve:
        try:
            result = run_curve(options, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(json.dumps(result))
        return
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
