"""Training throughput: the upstream-style configuration against the project's defaults, on real chunk lengths.

    python bench/throughput.py                 # GPU: roberta-base (random init), bf16, max_length 512
    python bench/throughput.py --steps 10      # CPU: a small RoBERTa as a quick proxy

Both configurations run a fixed number of optimizer steps (after a few warm-up steps) on chunks of the shared
sample (../shared/data) when present, else of the demo sample, each in its own process so peak memory is its
own. "upstream_style" pads every chunk to the longest of its 1000-document tokenisation batch (~512), draws
batches in random order, uses eager attention and plain AdamW; "optimized" uses the project's defaults
(dynamic padding to a multiple of 8, length-grouped batches, SDPA, fused AdamW on GPU). Precision is the same
for both. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data"))  # sample data, for development
SHARED_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow"]
UPSTREAM_TOKENIZATION_BATCH = 1000
# Dense bf16 tensor-core peak FLOP/s by GPU name (vendor data sheets); matched in order, first hit wins.
PEAK_BF16_FLOPS = [
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A6000", 155e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("4090", 165e12),
]
CPU_PROXY_CONFIG = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default: 50 GPU, 40 CPU)")
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=None, help="default: 32 on GPU, 8 on CPU")
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--chunk_overlap", type=int, default=50)
    parser.add_argument("--max_documents", type=int, default=None, help="use at most this many documents")
    parser.add_argument("--config", choices=["upstream_style", "optimized"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def load_texts_and_tokenizer(max_documents: int | None) -> tuple[list[str], str, str]:
    """Document texts of the shared sample (or the demo sample), with the tokenizer directory to use."""
    import data_loaders
    from m4_training import demo

    if SHARED_DATA.is_dir():
        data_dir, reddit_file = SHARED_DATA / "m4_sample", SHARED_DATA / "reddit" / "reddit_wsb_training.jsonl"
        tokenizer_dir, source = SHARED_DATA / "roberta-base-tokenizer", "shared sample"
        generators = ["llama2"]
    else:
        data_dir, reddit_file, tokenizer_dir = demo.prepare_demo(Path(tempfile.mkdtemp(prefix="bench-demo-")))
        source, generators = "demo sample", list(demo.DEMO_GENERATOR_FILES)
    domains = SHARED_DOMAINS if SHARED_DATA.is_dir() else list(demo.DEMO_DOMAINS)
    corpus = data_loaders.load_corpus(
        data_dir, domains, generators, reddit_file, data_loaders.TextNormalization(digits=True, unicode=True)
    )
    texts = [doc.text for doc in corpus.documents][:max_documents]
    return texts, str(tokenizer_dir), source


def build_model(tokenizer_dir: str, on_gpu: bool, max_length: int, attn_implementation: str):
    """roberta-base (random init) from the shared config on GPU; a small RoBERTa on CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, RobertaConfig

    config_dir = SHARED_DATA / "roberta-base-config"
    if on_gpu and config_dir.is_dir():
        config = AutoConfig.from_pretrained(config_dir)
    else:
        from transformers import AutoTokenizer

        vocab_size = len(AutoTokenizer.from_pretrained(tokenizer_dir))
        config = RobertaConfig(
            vocab_size=vocab_size, max_position_embeddings=max_length + 2, num_labels=2, **CPU_PROXY_CONFIG
        )
        if on_gpu:  # no shared config: roberta-base dimensions
            config = RobertaConfig(vocab_size=vocab_size, max_position_embeddings=max_length + 2, num_labels=2)
    config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn_implementation)
    if not on_gpu:
        # In the small CPU proxy the 50k-row embedding's dense gradient and AdamW update would cost more than
        # the encoder itself, a fixed per-step cost that roberta-base on a GPU does not have; freeze it.
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def peak_flops(on_gpu: bool) -> tuple[str, float | None]:
    import torch

    if not on_gpu:
        import platform

        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)", None
    name = torch.cuda.get_device_name()
    return name, next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


def measure(config: str, options: argparse.Namespace) -> dict:
    """Run one configuration in this process and return its throughput numbers."""
    import numpy as np
    import torch
    from datasets import disable_progress_bars
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler
    from transformers import AutoTokenizer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    import chunking

    disable_progress_bars()
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    batch_size = options.batch_size or (32 if on_gpu else 8)
    steps = options.steps or (50 if on_gpu else 40)
    texts, tokenizer_dir, source = load_texts_and_tokenizer(options.max_documents)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    documents = chunking.text_dataset(texts, labels=[i % 2 for i in range(len(texts))])
    chunks = chunking.chunk_documents(documents, tokenizer, options.max_length, options.chunk_overlap)
    lengths = chunking.column_array(chunks, "length")
    upstream = config == "upstream_style"
    if upstream:
        # Upstream padded inside its 1000-document tokenisation batches: each chunk to that batch's longest.
        batch_of = chunking.column_array(chunks, "doc_id") // UPSTREAM_TOKENIZATION_BATCH
        padded_to = np.maximum.reduceat(lengths, np.flatnonzero(np.r_[True, np.diff(batch_of) != 0]))[batch_of]
        chunks = chunks.add_column("pad_to", padded_to.tolist())
        collate = UpstreamCollator(tokenizer)
    else:
        collate = chunking.chunk_collator(tokenizer, options.max_length, pad_to_multiple_of=8, pad_to_max_length=False)
    # The epoch's batches as each configuration's sampler orders all chunks; the timed steps are batches spread
    # evenly over the epoch (so they follow the real length distribution), warm-up batches are their neighbours.
    generator = torch.Generator().manual_seed(options.seed)
    if upstream:
        sampler = RandomSampler(chunks, generator=generator)
    else:
        sampler = LengthGroupedSampler(batch_size, lengths=lengths.tolist(), generator=generator)
    epoch = list(BatchSampler(sampler, batch_size, drop_last=True))
    if len(epoch) < 2 * max(steps, options.warmup_steps):
        raise SystemExit(f"only {len(epoch)} batches of {batch_size}; lower --steps or --batch_size")
    positions = np.linspace(0, len(epoch) - 2, steps).astype(int)
    timed = [epoch[i] for i in positions]
    warmup = [epoch[i + 1] for i in positions[: options.warmup_steps]]
    loader = DataLoader(chunks, batch_sampler=timed, collate_fn=collate, pin_memory=on_gpu)
    model = build_model(tokenizer_dir, on_gpu, options.max_length, "eager" if upstream else "sdpa").to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True if on_gpu and not upstream else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else torch.autocast("cpu", enabled=False)

    def step(batch: dict) -> tuple[int, int]:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum()), batch["input_ids"].numel()

    for batch in DataLoader(chunks, batch_sampler=warmup, collate_fn=collate):
        step(batch)
    batches = iter(loader)
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    real = padded = 0
    start = time.perf_counter()
    for _ in range(steps):
        r, p = step(next(batches))
        real, padded = real + r, padded + p
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    device_name, peak = peak_flops(on_gpu)
    params = model.num_parameters()
    non_embedding = model.num_parameters(exclude_embeddings=True)
    peak_mem = (
        torch.cuda.max_memory_allocated() / 2**20
        if on_gpu
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "device": device_name,
        "model": f"{model.config.model_type} {params / 1e6:.1f}M params, {model.config.num_hidden_layers} layers, "
        f"hidden {model.config.hidden_size}, {'bf16' if on_gpu else 'fp32'}, max_length {options.max_length}, "
        f"batch {batch_size}, data: {source} ({len(chunks)} chunks)",
        "real_tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds,
        "samples_per_s": steps * batch_size / seconds,
        "real_token_share": real / padded,
        "mfu": 6 * params * real / seconds / peak if peak else None,
        "mfu_non_embedding": 6 * non_embedding * real / seconds / peak if peak else None,
        "peak_mem_mb": peak_mem,
        "steps": steps,
        "seconds": seconds,
    }


class UpstreamCollator:
    """Pads every chunk to the length its upstream tokenisation batch padded it to."""

    def __init__(self, tokenizer) -> None:  # noqa: ANN001
        self.pad_id = tokenizer.pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(f["pad_to"] for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            ids[row, : feature["length"]] = torch.tensor(feature["input_ids"])
            mask[row, : feature["length"]] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in features])}


def main() -> None:
    options = build_parser().parse_args()
    if options.config:
        print(json.dumps(measure(options.config, options)))
        return
    results = {}
    for config in ("upstream_style", "optimized"):
        command = [sys.executable, __file__, "--config", config, *sys.argv[1:]]
        child = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if child.returncode:
            sys.exit(child.returncode)  # its message is already on stderr
        results[config] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{config}: {json.dumps(results[config])}", file=sys.stderr)
    device, model = results["optimized"].pop("device"), results["optimized"].pop("model")
    results["upstream_style"].pop("device")
    results["upstream_style"].pop("model")
    ratio = results["optimized"]["real_tokens_per_s"] / results["upstream_style"]["real_tokens_per_s"]
    print(json.dumps({"device": device, "model": model, **results, "ratio": ratio}))


if __name__ == "__main__":
    main()
