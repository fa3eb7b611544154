"""A GPU rehearsal in one command: every stage a GPU run needs, timed, in one table.

    bash bench/gpu_check.sh                                   # one GPU, under 8 minutes
    bash bench/gpu_check.sh --allow_cpu --work_dir /tmp/gc    # the same steps scaled down, 1-2 minutes on a CPU

Steps, each in its own process (its output in WORK_DIR/<step>.log):
  throughput  bench/throughput.py: roberta-base layout (random init), bf16, upstream-style against optimized
  train       train.py, --train_steps optimizer steps of roberta-base, randomly initialised from the shared
              roberta-base-config and tokenizer (copied into WORK_DIR/model), on the shared sample's English
              domains plus its Reddit file
  predict     predict.py with the trained model over the shared Reddit file
  app         python -m bench.app on the trained model: the page's API latency and throughput

On a CPU (--allow_cpu) the model is a 2-layer RoBERTa with the same tokenizer, the windows are short and every
count is small. A failed step is reported in one line with its name; the steps after it still run where they
can, and the table is printed either way. The table's numbers also go to WORK_DIR/gpu_check.json.
Data: $M4_SHARED_DATA, else ../shared/data beside the repository. Exit codes: 0 every step passed, 1 a step
failed, 2 bad setting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data"))  # sample data, for development
ENGLISH_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow"]
REDDIT_FILE = Path("reddit") / "reddit_wsb_training.jsonl"
CPU_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256}
# Per scale: (throughput.py flags, train.py flags, bench.app flags). GPU: the benches' own defaults.
SCALES = {
    "gpu": ([], [], "--repeats 10 --requests 48".split()),
    "cpu": (
        "--steps 2 --warmup_steps 1 --batch_size 4 --max_length 128 --max_documents 100".split(),
        "--max_length 64 --chunk_overlap 8 --max_train_samples 64 --max_val_samples 40 --batch_size 8".split(),
        "--repeats 1 --requests 4 --throughput_tokens 64".split(),
    ),
}
TRAIN_RATE = re.compile(r"train_samples_per_second (\S+)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="outputs/gpu_check", help="outputs and logs (default: %(default)s)")
    parser.add_argument("--allow_cpu", action="store_true", help="without a CUDA GPU: run every step scaled down")
    parser.add_argument(
        "--train_steps", type=int, default=None, help="optimizer steps of the training (default: 200 GPU, 3 CPU)"
    )
    return parser


class StepFailed(Exception):
    """A step's one-line reason."""


def run_logged(command: list[str], log: Path) -> str:
    """Run `command` from the repository root, its stderr then stdout in `log`; return its last stdout line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "M4_SHARED_DATA": str(SHARED_DATA)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    log.write_text(result.stderr + result.stdout, encoding="utf-8")
    if result.returncode != 0:
        last = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()][-1:] or ["no output"]
        raise StepFailed(f"exit {result.returncode}: {last[0].strip()} (log: {log})")
    return (result.stdout.strip().splitlines() or [""])[-1]


def build_model(model_dir: Path, on_gpu: bool) -> None:
    """roberta-base's layout (on CPU a 2-layer one), randomly initialised, with the shared tokenizer beside it."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()

    shutil.copytree(SHARED_DATA / "roberta-base-tokenizer", model_dir, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(SHARED_DATA / "roberta-base-config")
    if not on_gpu:
        config.update(CPU_MODEL)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(model_dir)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    args = build_parser().parse_args()
    needed = ("m4_sample", REDDIT_FILE, "roberta-base-config", "roberta-base-tokenizer")
    missing = [str(path) for path in needed if not (SHARED_DATA / path).exists()]
    if missing:
        fail(f"{SHARED_DATA} lacks {', '.join(missing)}: set M4_SHARED_DATA to the shared data directory")
    if args.train_steps is not None and args.train_steps < 1:
        fail(f"--train_steps {args.train_steps}: give at least 1")
    work_dir = Path(args.work_dir).resolve()  # the steps run from the repository root
    if work_dir.exists() and not work_dir.is_dir():
        fail(f"--work_dir {work_dir} is a file: name a directory")
    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.allow_cpu:
        fail("torch sees no CUDA GPU: pass --allow_cpu to rehearse every step scaled down on this CPU")
    device = torch.cuda.get_device_name() if on_gpu else f"CPU ({os.cpu_count()} cores)"
    throughput_flags, train_flags, app_flags = SCALES["gpu" if on_gpu else "cpu"]
    train_steps = args.train_steps or (200 if on_gpu else 3)
    work_dir.mkdir(parents=True, exist_ok=True)
    model_dir, run_dir, predictions = work_dir / "model", work_dir / "train", work_dir / "predictions.jsonl"

    def throughput() -> tuple[str, dict]:
        command = [sys.executable, "bench/throughput.py", *throughput_flags]
        result = json.loads(run_logged(command, work_dir / "throughput.log"))
        real = result["optimized"]["real_tokens_per_s"]
        return f"{real:,.0f} real tokens/s, {result['ratio']:.2f}x upstream-style", result

    def train() -> tuple[str, dict]:
        build_model(model_dir, on_gpu)
        command = [sys.executable, "train.py", "--model", str(model_dir), "--data_dir", str(SHARED_DATA / "m4_sample"),
                   "--reddit_file", str(SHARED_DATA / REDDIT_FILE), "--train_domains", *ENGLISH_DOMAINS,
                   "--train_generators", "llama2", "--use_class_weights", "--stratified_split",
                   "--max_steps", str(train_steps), "--output_dir", str(run_dir), "--overwrite_output_dir",
                   *train_flags]  # fmt: skip
        log = work_dir / "train.log"
        run_logged(command, log)
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        rate = TRAIN_RATE.search(log.read_text(encoding="utf-8"))  # the Trainer's own timing, set-up excluded
        rate_text = f", {float(rate[1]):,.1f} chunks/s" if rate else ""
        return f"{train_steps} steps{rate_text}, document AUROC {metrics['document']['auroc']:.3f}", metrics

    def predict() -> tuple[str, dict]:
        start = time.perf_counter()
        command = [sys.executable, "predict.py", "--model_path", str(run_dir), "--input",
                   str(SHARED_DATA / REDDIT_FILE), "--output", str(predictions)]  # fmt: skip
        run_logged(command, work_dir / "predict.log")
        documents = len(predictions.read_text(encoding="utf-8").splitlines())
        rate = documents / (time.perf_counter() - start)
        return f"{documents} documents, {rate:,.1f} documents/s (start-up included)", {"documents": documents}

    def app() -> tuple[str, dict]:
        command = [sys.executable, "-m", "bench.app", "--model_path", str(run_dir), "--no_minilm", *app_flags]
        (result,) = json.loads(run_logged(command, work_dir / "app.log"))["results"]
        latency = [f"{tokens} tokens {result[f'latency_{tokens}_tokens_s'] * 1000:,.0f} ms" for tokens in (512, 5000)]
        return f"latency {', '.join(latency)}", result

    rows: list[dict] = []
    for name, step in (("throughput", throughput), ("train", train), ("predict", predict), ("app", app)):
        start = time.perf_counter()
        key, details, error = "", {}, None
        if name in ("predict", "app") and not rows[1]["ok"]:
            error = "skipped: the train step failed"
        else:
            try:
                key, details = step()
            except Exception as failure:  # noqa: BLE001 -- any failure is this step's, reported in one line
                error = f"failed: {str(failure) or type(failure).__name__}"
        if error:
            print(f"error: step {name} {error}", file=sys.stderr)
            key = error
        rows.append({"step": name, "seconds": round(time.perf_counter() - start, 1), "key": key, "device": device,
                     "ok": error is None, "details": details})  # fmt: skip
    report = work_dir / "gpu_check.json"
    report.write_text(json.dumps({"train_steps": train_steps, "steps": rows}, indent=2) + "\n", encoding="utf-8")
    print("| step | seconds | key number | device |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['seconds']:.1f} | {row['key']} | {row['device']} |")
    print(f"every number: {report}")
    sys.exit(0 if all(row["ok"] for row in rows) else 1)


if __name__ == "__main__":
    main()
