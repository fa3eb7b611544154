"""Time of every attack that needs no model on 10,000 documents, and of canonicalising what they produce.

    python -m bench.attacks                     # the shared sample's texts, repeated to 10,000 documents
    python -m bench.attacks --documents 2000    # fewer

The texts are the human and machine texts of ../shared/data/m4_sample (every language in it), repeated in order
up to --documents; each document is seeded by its position, so repeated texts are attacked differently, as
distinct documents would be. Every attack runs once over all documents in this one process (the attacks are
single-threaded), then canonicalize() runs over its output. Times exclude imports and reading the texts but
include building the look-alike tables on first use. The target is a total under 60 seconds on 2 cores. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data"))  # sample data, for development
TARGET_SECONDS = 60.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(SHARED_DATA / "m4_sample"))
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def sample_texts(data_dir: Path, documents: int) -> list[str]:
    texts = []
    for path in sorted(data_dir.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                texts += [row[field] for field in ("human_text", "machine_text") if isinstance(row.get(field), str)]
    if not texts:
        sys.exit(f"error: no texts in {data_dir}/*.jsonl (set --data_dir or M4_SHARED_DATA)")
    return [texts[i % len(texts)] for i in range(documents)]


def main() -> None:
    options = build_parser().parse_args()
    from m4_training.attacks import ATTACK_RATES, MODEL_ATTACKS, attack_texts
    from m4_training.cleaning import canonicalize

    texts = sample_texts(Path(options.data_dir), options.documents)
    keys = [str(i) for i in range(len(texts))]
    rows = {}
    for name in ATTACK_RATES:
        if name in MODEL_ATTACKS:
            continue
        start, start_cpu = time.perf_counter(), time.process_time()
        attacked, unchanged = attack_texts(name, texts, seed=options.seed, keys=keys)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        start = time.perf_counter()
        for text in attacked:
            canonicalize(text)
        rows[name] = {"seconds": seconds, "cpu_seconds": cpu_seconds, "unchanged": unchanged,
                      "canonicalize_seconds": time.perf_counter() - start}  # fmt: skip
        print(f"{name:22s} {seconds:7.2f} s  (CPU {cpu_seconds:6.2f} s)  unchanged {unchanged:5d}  "
              f"canonicalize {rows[name]['canonicalize_seconds']:6.2f} s", file=sys.stderr, flush=True)  # fmt: skip
    total = sum(row["seconds"] for row in rows.values())
    print(f"all {len(rows)} attacks on {len(texts)} documents ({sum(map(len, texts)) / 1e6:.1f} M characters): "
          f"{total:.1f} s (target: under {TARGET_SECONDS:.0f} s)", file=sys.stderr)  # fmt: skip
    print(json.dumps({"documents": len(texts), "attacks": rows, "total_seconds": total,
                      "within_target": total < TARGET_SECONDS}))  # fmt: skip


if __name__ == "__main__":
    main()
