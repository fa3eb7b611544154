"""Latency and throughput of app.py's HTTP API: Gradio's queue, batching, and predict.py's scoring behind it.

    python -m bench.app                       # the demo model and MiniLM-L6, on this machine
    python -m bench.app --model_path outputs/roberta-base --no_minilm

Each model is served by `app.py --model_path DIR` on a free loopback port (its own process, default threads).
Latency: one request holding one text of 512 and of 5,000 text tokens (the model's tokenizer, special tokens not
counted), median of --repeats after one warm-up. Throughput: --requests requests of one --throughput_tokens-token
text each, sent by 1 client and by 8 concurrent clients; the ratio is what the queue's batching gains.

Texts are the English domains of ../shared/data/m4_sample when present, else the demo sample, joined and cut at
the token count. app.py needs a train.py output directory: MiniLM gets a 5-step demo training run with
`--max_length 512` (its weights do not change the timing). The last line is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

import chunking  # noqa: E402
from bench.inference import benchmark_texts, minilm_dir  # noqa: E402
from m4_training.serving import DEMO_MODEL_DIR, demo_model_dir  # noqa: E402
from tools.browser import running_app  # noqa: E402

LATENCY_TOKENS = (512, 5000)
CONCURRENT_CLIENTS = 8


def text_of_tokens(tokenizer: object, source: str, n_tokens: int) -> str:
    """The longest prefix of `source` (repeated as needed) with exactly `n_tokens` text tokens, as app.py counts."""
    while len(chunking.encode_with_offsets(tokenizer, [source])[0].ids) <= n_tokens:
        source = f"{source} {source}"
    text = source[: chunking.encode_with_offsets(tokenizer, [source])[0].offsets[n_tokens - 1][1]]
    assert len(chunking.encode_with_offsets(tokenizer, [text])[0].ids) == n_tokens
    return text


def call(client: httpx.Client, texts: list[str]) -> list[dict]:
    event = client.post("gradio_api/call/predict", json={"data": [texts]}).json()["event_id"]
    stream = client.get(f"gradio_api/call/predict/{event}").text
    data = next(line for line in stream.splitlines() if line.startswith("data: "))
    (rows,) = json.loads(data[len("data: ") :])
    if not isinstance(rows, list):
        raise RuntimeError(f"the API refused the request: {rows}")
    return rows


def throughput(url: str, text: str, requests: int, clients: int) -> float:
    """Documents per second for `requests` one-text requests sent by `clients` concurrent clients."""
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client_loop(count: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            for _ in range(count):
                call(client, [text])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, per_client))
    return requests / (time.perf_counter() - start)


def bench_model(name: str, model_path: Path, source: str, args: argparse.Namespace) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    result: dict = {"model": name, "model_path": str(model_path)}
    with running_app(
        "--model_path", str(model_path), threads=None, log=Path(tempfile.gettempdir()) / "bench-app.log"
    ) as url:
        with httpx.Client(base_url=url, timeout=600) as client:
            for n_tokens in LATENCY_TOKENS:
                text = text_of_tokens(tokenizer, source, n_tokens)
                call(client, [text])  # warm-up
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    (row,) = call(client, [text])
                    times.append(time.perf_counter() - start)
                result[f"latency_{n_tokens}_tokens_s"] = statistics.median(times)
                result[f"windows_{n_tokens}_tokens"] = row["n_chunks"]
                print(f"{name}: {n_tokens} tokens ({row['n_chunks']} windows): median {statistics.median(times):.3f} s")
        text = text_of_tokens(tokenizer, source, args.throughput_tokens)
        throughput(url, text, CONCURRENT_CLIENTS, CONCURRENT_CLIENTS)  # warm-up
        for clients in (1, CONCURRENT_CLIENTS):
            result[f"docs_per_s_{clients}_clients"] = throughput(url, text, args.requests, clients)
            print(f"{name}: {clients} client(s): {result[f'docs_per_s_{clients}_clients']:.1f} documents/s")
    result["batching_gain"] = result[f"docs_per_s_{CONCURRENT_CLIENTS}_clients"] / result["docs_per_s_1_clients"]
    print(f"{name}: {CONCURRENT_CLIENTS} concurrent clients / 1 client = {result['batching_gain']:.2f}x")
    return result


def minilm_model(work_dir: Path) -> Path:
    """A train.py output directory for MiniLM-L6: 5 steps on the demo sample, windows of 512 tokens."""
    output = work_dir / "minilm"
    command = [sys.executable, str(ROOT / "train.py"), "--demo", "--model", str(minilm_dir()), "--max_length", "512",
               "--chunk_overlap", "50", "--max_steps", "5", "--max_train_samples", "50", "--max_val_samples", "40",
               "--batch_size", "8", "--output_dir", str(output)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model_path", help=f"a train.py output directory (default: the demo model, {DEMO_MODEL_DIR}/)"
    )
    parser.add_argument("--no_minilm", action="store_true", help="skip MiniLM-L6")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--requests", type=int, default=48, help="requests per throughput measurement")
    parser.add_argument("--throughput_tokens", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        texts, source_name = benchmark_texts(Path(work), 200)
        source = " ".join(texts)
        models = [("demo" if not args.model_path else Path(args.model_path).name,
                   Path(args.model_path) if args.model_path else demo_model_dir(ROOT / DEMO_MODEL_DIR))]  # fmt: skip
        if not args.no_minilm and minilm_dir() is not None:
            models.append(("MiniLM-L6 (5 training steps)", minilm_model(Path(work))))
        results = [bench_model(name, path, source, args) for name, path in models]
    print(json.dumps({"texts": source_name, "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
