"""predict.py's work around the model, from 1,000 to 100,000 documents: does it grow linearly?

    python bench/predict_scaling.py                          # 1,000, 10,000 and 100,000 documents
    python bench/predict_scaling.py --documents 1000 300000  # other sizes

The input is a JSONL file of N labelled documents ({"id", "text", "label", "domain", "generator"}) whose texts
come from the shared sample's English domains (else the generated demo sample), each made distinct. Timed in
a fresh process per size (fastest of --repeats; peak memory is that process's own):

- read: `predict.read_counting_skips`, that is `data_loaders.read_documents` (JSON, skip accounting, frame,
  normalisation);
- aggregate: `predict.score_documents` with the model replaced by made-up chunk probabilities (one chunk per
  2,000 characters, seeded): `evaluation.aggregate_documents` by doc_id and predict's merge of the scores into
  the documents, exactly as after a real forward pass. Chunking and the model are not timed here
  (bench/inference.py measures them);
- output: `evaluation.prediction_rows` and writing them with `files.write_jsonl`;
- evaluate: `predict.evaluate` (labels, metrics at the threshold per domain and generator), as --eval does.

Each stage's seconds, wall and CPU of this thread (steadier when other jobs share the machine), are fitted as
c * documents ** k by least squares on logarithms: k <= 1.1 means linear.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from prepare import fitted_exponent, measurement_output  # bench/prepare.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "m4_sample"
ENGLISH_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow"]
STAGES = ("read", "aggregate", "output", "evaluate")
CHARACTERS_PER_CHUNK = 2000
THRESHOLD = 0.5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3, help="runs per size (fastest reported)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    return parser


@dataclass
class MadeUpDetector:
    """What predict.py uses of a Detector, with chunk probabilities made up instead of a model's."""

    normalization: object = None  # the default run's (set below: data_loaders is imported late, as everywhere here)
    domains: list[str] | None = None
    generators: list[str] | None = None
    target_fpr: float | None = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        import data_loaders

        self.normalization = self.normalization or data_loaders.TextNormalization(digits=True, unicode=True)

    def score(self, texts: list[str], batch_size: int, dtype: object, aggregate: str, num_proc: int | None):
        import numpy as np
        import pandas as pd

        from m4_training.evaluation import aggregate_documents

        n_chunks = np.fromiter((1 + len(text) // CHARACTERS_PER_CHUNK for text in texts), dtype=np.int64)
        chunk_doc_ids = np.repeat(np.arange(len(texts)), n_chunks)
        probs = np.random.default_rng(self.seed).random(len(chunk_doc_ids))
        frame = pd.DataFrame({"doc_id": np.arange(len(texts))})
        return aggregate_documents(chunk_doc_ids, probs, frame, how=aggregate), None, probs


def write_input(path: Path, count: int) -> None:
    """`count` labelled documents, texts cycled from the sample and made distinct by a tag."""
    import data_loaders
    from m4_training import demo

    if SHARED_SAMPLE.is_dir():
        corpus = data_loaders.load_corpus(
            SHARED_SAMPLE,
            ENGLISH_DOMAINS,
            ["llama2"],
            None,
            data_loaders.TextNormalization(digits=False, unicode=False),
        )
    else:
        data_dir, _ = demo.write_demo_data(path.parent / "demo")
        domains, generators = list(demo.DEMO_DOMAINS), list(demo.DEMO_GENERATOR_FILES)
        corpus = data_loaders.load_corpus(
            data_dir, domains, generators, None, data_loaders.TextNormalization(digits=False, unicode=False)
        )
    documents = corpus.documents
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            doc = documents[i % len(documents)]
            row = {"id": f"doc-{i}", "text": f"copy {i // len(documents)} {doc.text}", "label": doc.label,
                   "domain": doc.domain, "generator": doc.generator}  # fmt: skip
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def measure(path: str) -> dict:
    """Seconds of each stage on the documents in `path`, in this process."""
    import predict
    from m4_training import evaluation
    from m4_training.files import write_jsonl

    args = predict.parse_predict_args(["--model_path", "made-up", "--input", path])
    detector = MadeUpDetector()
    output = Path(path).with_suffix(".predictions.jsonl")
    seconds, cpu_seconds = {}, {}
    start, start_cpu = time.perf_counter(), time.thread_time()

    def lap(stage: str) -> None:
        nonlocal start, start_cpu
        seconds[stage], cpu_seconds[stage] = time.perf_counter() - start, time.thread_time() - start_cpu
        start, start_cpu = time.perf_counter(), time.thread_time()

    reading = predict.Reading.for_detectors([detector], args)
    documents, _ = predict.read_counting_skips(args.input, args.input_format, reading, args)
    lap("read")
    predictions = predict.score_documents(documents, detector, args, reading)
    lap("aggregate")
    write_jsonl(output, evaluation.prediction_rows(predictions, THRESHOLD))
    lap("output")
    metrics, _ = predict.evaluate(predictions, detector, THRESHOLD)
    lap("evaluate")
    output.unlink()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "documents": len(predictions),
        "chunks": int(predictions["n_chunks"].sum()),
        "auroc": metrics["document"]["auroc"],
        "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    options = build_parser().parse_args()
    if options.measure:
        print(json.dumps(measure(options.measure)))
        return
    from m4_training.reports import format_table

    workdir = Path(tempfile.mkdtemp(prefix="bench-predict-scaling-"))
    rows = {}
    try:
        for count in sorted(options.documents):
            path = workdir / f"documents-{count}.jsonl"
            write_input(path, count)
            runs = []
            for _ in range(options.repeats):
                command = [sys.executable, __file__, "--measure", str(path)]
                runs.append(measurement_output(command))
            row = runs[0] | {
                "seconds": {stage: min(run["seconds"][stage] for run in runs) for stage in STAGES},
                "cpu_seconds": {stage: min(run["cpu_seconds"][stage] for run in runs) for stage in STAGES},
                "peak_mem_mb": max(run["peak_mem_mb"] for run in runs),
            }
            rows[count] = row
            print(f"{count}: {json.dumps(row)}", file=sys.stderr, flush=True)
            path.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    counts = sorted(rows)
    documents = [rows[c]["documents"] for c in counts]
    exponents = {
        f"{stage}{suffix}": fitted_exponent(documents, [rows[c][key][stage] for c in counts])
        for stage in STAGES
        for key, suffix in (("seconds", ""), ("cpu_seconds", "_cpu"))
    }
    table = [
        [rows[c]["documents"], rows[c]["chunks"],
         *(f"{rows[c]['seconds'][stage]:.3f} ({rows[c]['cpu_seconds'][stage]:.3f})" for stage in STAGES),
         *(1000 * rows[c]["cpu_seconds"][stage] / rows[c]["documents"] for stage in STAGES),
         round(rows[c]["peak_mem_mb"])]
        for c in counts
    ]  # fmt: skip
    header = ["documents", "chunks", *(f"{stage} s (CPU s)" for stage in STAGES),
              *(f"{stage} CPU s/1000 docs" for stage in STAGES), "peak RSS MB"]  # fmt: skip
    print(format_table(header, table, markdown=True), file=sys.stderr)
    fitted = [f"{name} {value:.3f}" if value is not None else f"{name} -" for name, value in exponents.items()]
    print("fitted exponents (seconds vs documents): " + ", ".join(fitted), file=sys.stderr)
    print(json.dumps({"sizes": {str(c): rows[c] for c in counts}, "exponents": exponents}))


if __name__ == "__main__":
    main()
