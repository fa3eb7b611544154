"""Every setting of train.py, predict.py and prepare_data.py, declared once and checked once.

Each tool's settings are dataclasses parsed by `HfArgumentParser`; train.py's include a `TrainingArguments`
subclass, so every transformers training flag passes straight through and only this tool's defaults and short
spellings (`--lr`, `--epochs`, `--batch_size`, `--use_wandb`, ...) are declared here. Each `__post_init__` checks
its own values, so a bad setting ends the run before any file is read. The only checks that need more than the
settings (the window against the tokenizer, the length against the model's positions) are `check_window` and
`check_positions` below, run as soon as the tokenizer and the model config are loaded.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from datasets import config as datasets_config
from transformers import PreTrainedTokenizerBase, TrainingArguments

from m4_training import demo
from m4_training.cli import CommandLineParser, UserError

logger = logging.getLogger(__name__)

DEFAULT_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow", "peerread"]
DEFAULT_GENERATORS = ["chatGPT", "davinci", "cohere", "dolly", "flant5"]
DEFAULT_CACHE_DIR = str(Path(datasets_config.HF_DATASETS_CACHE) / "m4_detector_prepared")
MAX_AUTO_DATALOADER_WORKERS = 4
# Data and window settings that do not change the prepared data (so they stay out of the cache key).
NOT_IN_CACHE_KEY = {"num_proc", "cache_dir", "no_cache", "pad_to_multiple_of", "pad_to_max_length"}


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"help": text, **extra}}


def _require(condition: bool, flag: str, requirement: str, value: Any) -> None:
    if not condition:
        raise UserError(f"--{flag} must be {requirement}, got {value}")


def _check_fraction(flag: str, value: float, low_open: bool = False) -> None:
    inside = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    _require(inside, flag, "between 0 and 1 (exclusive)" if low_open else "in [0, 1)", value)


def _check_optional_positive(flag: str, value: int | None) -> None:
    _require(value is None or value >= 1, flag, "at least 1", value)


def _is_within(path: str | Path, container: str | Path) -> bool:
    path, container = Path(path).resolve(), Path(container).resolve()
    return path == container or container in path.parents


def check_output_paths(outputs: dict[str, str | None], protected: dict[str, str | None]) -> None:
    """No output may be, or lie inside, an input or a model directory, nor be another output: nothing the user
    already has is ever replaced. Keys are the flags, None (or '-' for stdio) means not used."""
    used_outputs = {flag: path for flag, path in outputs.items() if path and path != "-"}
    for flag, path in used_outputs.items():
        for other_flag, other in protected.items():
            if other and other != "-" and _is_within(path, other):
                where = "is" if Path(path).resolve() == Path(other).resolve() else "is inside"
                raise UserError(
                    f"{flag} {path} {where} {other_flag} {other}: writing there would replace what is read; "
                    f"choose another {flag}"
                )
    flags = list(used_outputs)
    for position, flag in enumerate(flags):
        for other_flag in flags[position + 1 :]:
            if Path(used_outputs[flag]).resolve() == Path(used_outputs[other_flag]).resolve():
                raise UserError(f"{flag} and {other_flag} are the same path ({used_outputs[flag]}); give two paths")


def _local_directory(name: str | None) -> str | None:
    """A --model given as a local directory (a hub id is not a path the run could write into)."""
    return name if name and Path(name).is_dir() else None


def capped_num_proc(num_proc: int | None) -> int | None:
    """--num_proc above the CPU count only adds processes that wait; cap it (with a warning)."""
    _check_optional_positive("num_proc", num_proc)
    cpus = os.cpu_count() or 1
    if num_proc is not None and num_proc > cpus:
        logger.warning("--num_proc %d is more than the %d CPUs here; using %d", num_proc, cpus, cpus)
        return cpus
    return num_proc


# ----------------------------------------------------------------------------------------------- train.py


@dataclass
class ModelArguments:
    _argument_group_name = "model"

    model: str | None = field(default="roberta-base", **_help("hub id or local directory (any encoder family)"))
    dropout: float = field(default=0.1, **_help("dropout of the encoder and the classifier"))
    freeze_base: bool = field(default=False, **_help("train only the classification head"))
    freeze_layers: int = field(default=0, **_help("freeze the embeddings and the first N encoder layers"))
    attn_implementation: str | None = field(
        default=None, **_help("sdpa, eager, flash_attention_2, ...; default: transformers picks (sdpa where supported)")
    )

    def __post_init__(self) -> None:
        _require(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        _require(self.freeze_layers >= 0, "freeze_layers", "at least 0", self.freeze_layers)


@dataclass
class DataArguments:
    _argument_group_name = "data"

    data_dir: str | None = field(default="M4_cleaned/data", **_help("directory of <domain>_<generator>.jsonl"))
    reddit_file: str | None = field(
        default="reddit_training_60k.jsonl", **_help("JSONL (or CSV) of human posts; 'none' trains on M4 only")
    )
    train_domains: list[str] = field(default_factory=lambda: list(DEFAULT_DOMAINS), **_help("M4 domains to load"))
    train_generators: list[str] = field(
        default_factory=lambda: list(DEFAULT_GENERATORS), **_help("M4 generators to load")
    )
    normalize_digits: bool = field(default=True, **_help("map every digit to 0 (training and prediction)"))
    max_train_samples: int | None = field(default=None, **_help("at most N training documents, as whole groups"))
    max_val_samples: int | None = field(default=None, **_help("at most N validation documents, as whole groups"))
    num_proc: int | None = field(default=None, **_help("processes for tokenisation"))
    cache_dir: str = field(
        default=DEFAULT_CACHE_DIR,
        **_help("cache of prepared (split, chunked) data, keyed by data, tokenizer and settings"),
    )
    no_cache: bool = field(default=False, **_help("prepare the data again and cache nothing"))

    def __post_init__(self) -> None:
        _check_optional_positive("max_train_samples", self.max_train_samples)
        _check_optional_positive("max_val_samples", self.max_val_samples)
        self.num_proc = capped_num_proc(self.num_proc)
        if self.reddit_file is not None and self.reddit_file.strip().lower() in ("", "none"):
            self.reddit_file = None

    @property
    def cache(self) -> str | None:
        return None if self.no_cache else self.cache_dir

    @property
    def strict_names(self) -> tuple[bool, bool]:
        """Whether each of --train_domains and --train_generators must match files name by name: a list the user
        chose must (a typo would drop data); the full M4 default list need not be present in every directory."""
        return self.train_domains != DEFAULT_DOMAINS, self.train_generators != DEFAULT_GENERATORS


@dataclass
class SplitArguments:
    _argument_group_name = "split"

    stratified_split: bool = field(
        default=False, **_help("grouped split stratified by label and domain; off = generator hold-out")
    )
    validation_split: float = field(
        default=0.1, **_help("validation share of documents (stratified) or of groups (hold-out)")
    )
    val_generator: str = field(default="flant5", **_help("generator held out for validation (hold-out flow)"))
    reddit_val_fraction: float = field(default=0.1, **_help("share of Reddit posts in validation (hold-out flow)"))

    def __post_init__(self) -> None:
        _check_fraction("validation_split", self.validation_split, low_open=True)
        _check_fraction("reddit_val_fraction", self.reddit_val_fraction)


@dataclass
class ChunkingArguments:
    _argument_group_name = "chunking"

    max_length: int = field(default=512, **_help("tokens per chunk, special tokens included"))
    chunk_overlap: int = field(default=50, **_help("tokens shared by neighbouring chunks"))
    pad_to_multiple_of: int = field(default=8, **_help("dynamic padding granularity per batch; 0 = exact"))
    pad_to_max_length: bool = field(default=False, **_help("pad every batch to --max_length (slow; for comparisons)"))

    def __post_init__(self) -> None:
        _require(self.max_length >= 2, "max_length", "at least 2", self.max_length)
        _require(0 <= self.chunk_overlap < self.max_length, "chunk_overlap", "in [0, --max_length)", self.chunk_overlap)
        _require(self.pad_to_multiple_of >= 0, "pad_to_multiple_of", "at least 0", self.pad_to_multiple_of)


@dataclass
class EvaluationArguments:
    _argument_group_name = "evaluation"

    target_fpr: float = field(
        default=0.05,
        **_help("the decision threshold keeps the human-document FPR on validation at most this in every domain"),
    )
    baseline: Literal["tfidf", "none"] = field(
        default="tfidf", **_help("classical baseline fitted on the same split ('none' skips it)")
    )

    def __post_init__(self) -> None:
        _check_fraction("target_fpr", self.target_fpr)


@dataclass
class RunArguments:
    _argument_group_name = "run"

    dry_run: bool = field(default=False, **_help("load, split and chunk only; write the data reports"))
    demo: bool = field(default=False, **_help("run offline on a generated sample with a tiny model"))


@dataclass
class DetectorTrainingArguments(TrainingArguments):
    """`TrainingArguments` with this tool's defaults; fields not declared here pass through unchanged."""

    _argument_group_name = "training (any other transformers TrainingArguments flag works too)"

    output_dir: str | None = field(default="outputs/m4-detector", **_help("where the model and every report go"))
    overwrite_output_dir: bool = field(
        default=False, **_help("replace a previous run in --output_dir (deletes its checkpoints and results first)")
    )
    num_train_epochs: float = field(default=3.0, **_help("training epochs (may be fractional)", aliases=["--epochs"]))
    per_device_train_batch_size: int = field(
        default=16, **_help("training chunks per device per step", aliases=["--batch_size"])
    )
    per_device_eval_batch_size: int = field(
        default=64, **_help("evaluation chunks per device", aliases=["--eval_batch_size"])
    )
    learning_rate: float = field(default=2e-5, **_help("peak learning rate (AdamW, linear decay)", aliases=["--lr"]))
    weight_decay: float = field(default=0.01, **_help("AdamW weight decay"))
    warmup_steps: float = field(
        default=0.06, **_help("warm-up: a share of the steps if below 1, else a step count", aliases=["--warmup_ratio"])
    )
    max_steps: int = field(default=-1, **_help("stop after N optimizer steps (overrides --epochs; quick runs)"))
    gradient_accumulation_steps: int = field(default=1, **_help("micro-batches per optimizer step"))
    logging_steps: float = field(default=50, **_help("log the loss every N steps"))
    eval_steps: float | None = field(default=None, **_help("evaluate and save every N steps (default: every epoch)"))
    eval_strategy: str = field(default="epoch", **_help("when to evaluate and save: epoch, or steps with --eval_steps"))
    save_strategy: str = field(default="epoch", **_help("follows --eval_strategy (and --eval_steps)"))
    save_total_limit: int | None = field(default=2, **_help("checkpoints kept on disk"))
    optim: str = field(default="auto", **_help("auto: adamw_torch_fused on GPU, adamw_torch on CPU"))
    tf32: bool | None = field(default=None, **_help("TF32 matmuls; default: on for Ampere and newer GPUs"))
    dataloader_num_workers: int | None = field(default=None, **_help("default: min(4, CPUs) on GPU, 0 on CPU"))
    train_sampling_strategy: str = field(
        default="group_by_length", **_help("group_by_length (batches of similar lengths, less padding) or random")
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        **_help("several GPUs: let DDP look for parameters without gradients each step (only if DDP asks)"),
    )
    remove_unused_columns: bool = field(
        default=False, **_help("keep doc_id and length in the batches (the collator drops them)")
    )
    bf16: bool = field(default=False, **_help("= --precision bf16"))
    fp16: bool = field(default=False, **_help("= --precision fp16"))
    torch_compile: bool = field(default=False, **_help("compile the model with torch.compile"))
    seed: int = field(default=42, **_help("seed of the split, the sampling and the training"))
    resume_from_checkpoint: str | None = field(
        default=None, **_help("a checkpoint-N directory, or auto (the newest in --output_dir)")
    )
    report_to: list[str] = field(
        default_factory=lambda: ["none"], **_help("trackers: none, wandb, tensorboard, ... (also --use_wandb)")
    )
    run_name: str | None = field(default=None, **_help("run name for the tracker"))
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(
        default="auto", **_help("auto: bf16 on GPUs with native bf16, else fp16 on GPU; fp32 on CPU")
    )
    use_class_weights: bool = field(default=False, **_help("weight the loss by N/(2*N_c) of the training chunks"))
    early_stopping_patience: int | None = field(
        default=None, **_help("stop after N evaluations without a lower validation loss and keep the best checkpoint")
    )

    def __post_init__(self) -> None:
        self._check_values()
        on_gpu = torch.cuda.is_available()
        self._resolve_precision(on_gpu)
        if self.optim == "auto":
            self.optim = "adamw_torch_fused" if on_gpu else "adamw_torch"
        if self.dataloader_num_workers is None:
            # A few workers on a GPU so collation overlaps the step; none on CPU, where they compete with it.
            self.dataloader_num_workers = min(MAX_AUTO_DATALOADER_WORKERS, os.cpu_count() or 1) if on_gpu else 0
        self.dataloader_persistent_workers = self.dataloader_num_workers > 0
        self.dataloader_pin_memory = self.dataloader_pin_memory and on_gpu
        ampere = on_gpu and torch.cuda.get_device_capability()[0] >= 8
        self.tf32 = (self.tf32 is not False) if ampere else None  # TF32 exists from Ampere on
        if self.eval_steps and self.eval_strategy == "epoch":
            self.eval_strategy = self.save_strategy = "steps"
            self.save_steps = self.eval_steps
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not on_gpu:
            self.use_cpu = True  # distributed on CPU (gloo): without it every process would train on its own
        if self.early_stopping_patience is not None and self.metric_for_best_model is None:
            # The chunk-level validation loss is the quantity being optimised and does not jump on a handful of
            # documents the way accuracy at a threshold does.
            self.load_best_model_at_end = True
            self.metric_for_best_model = "eval_loss"
            self.greater_is_better = False
        super().__post_init__()

    def _check_values(self) -> None:
        _require(self.per_device_train_batch_size >= 1, "batch_size", "at least 1", self.per_device_train_batch_size)
        _require(self.per_device_eval_batch_size >= 1, "eval_batch_size", "at least 1", self.per_device_eval_batch_size)
        _require(
            self.gradient_accumulation_steps >= 1,
            "gradient_accumulation_steps",
            "at least 1",
            self.gradient_accumulation_steps,
        )
        _require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0, "lr", "a positive number", self.learning_rate
        )
        _require(
            math.isfinite(self.num_train_epochs) and (self.num_train_epochs > 0 or self.max_steps > 0),
            "epochs",
            "a positive number (or set --max_steps)",
            self.num_train_epochs,
        )
        _require(
            math.isfinite(self.warmup_steps) and self.warmup_steps >= 0, "warmup_ratio", "at least 0", self.warmup_steps
        )
        _require(
            math.isfinite(self.logging_steps) and self.logging_steps > 0,
            "logging_steps",
            "positive",
            self.logging_steps,
        )
        _require(self.eval_steps is None or self.eval_steps > 0, "eval_steps", "positive", self.eval_steps)
        _require(self.seed >= 0, "seed", "at least 0", self.seed)
        _check_optional_positive("save_total_limit", self.save_total_limit)
        _check_optional_positive("early_stopping_patience", self.early_stopping_patience)
        _require(
            self.dataloader_num_workers is None or self.dataloader_num_workers >= 0,
            "dataloader_num_workers",
            "at least 0",
            self.dataloader_num_workers,
        )
        if self.resume_from_checkpoint and self.overwrite_output_dir:
            raise UserError("--resume_from_checkpoint continues a run and --overwrite_output_dir replaces it: pick one")

    def _resolve_precision(self, on_gpu: bool) -> None:
        """--precision, or its spellings --bf16 / --fp16, into the Trainer's bf16/fp16 switches."""
        spelled = {name for name in ("bf16", "fp16") if getattr(self, name)}
        if len(spelled) > 1 or (spelled and self.precision not in ("auto", *spelled)):
            raise UserError(f"--precision {self.precision}, --bf16 and --fp16 disagree: give one of them")
        precision = spelled.pop() if spelled else resolve_precision(self.precision, on_gpu)
        self.precision = precision
        self.bf16, self.fp16 = precision == "bf16", precision == "fp16"


def resolve_precision(precision: str, on_gpu: bool | None = None) -> str:
    """`auto`: bf16 on GPUs with native bf16 (Ampere and newer), fp16 on older GPUs, fp32 on CPU.

    Native only: torch counts emulated bf16 as supported on V100/T4, where it is slow.
    """
    if precision != "auto":
        return precision
    if not (torch.cuda.is_available() if on_gpu is None else on_gpu):
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


class TrainConfig(NamedTuple):
    model: ModelArguments
    data: DataArguments
    split: SplitArguments
    chunking: ChunkingArguments
    evaluation: EvaluationArguments
    run: RunArguments
    training: DetectorTrainingArguments

    def as_dict(self) -> dict[str, Any]:
        """Every setting by group, JSON-ready (training_config.json)."""
        groups = {
            name: {f.name: getattr(part, f.name) for f in fields(part)}
            for name, part in self._asdict().items()
            if name != "training"
        }
        return groups | {"training": self.training.to_dict()}


TRAIN_GROUPS = (
    ModelArguments,
    DataArguments,
    SplitArguments,
    ChunkingArguments,
    EvaluationArguments,
    RunArguments,
    DetectorTrainingArguments,
)
# `--demo` changes these defaults (explicit flags still win). None for model, data and Reddit file means the
# generated sample and tiny model.
DEMO_DEFAULTS = {
    "model": None,
    "data_dir": None,
    "reddit_file": None,
    "output_dir": "demo_output",
    "train_domains": list(demo.DEMO_DOMAINS),
    "train_generators": list(demo.DEMO_GENERATOR_FILES),
    "max_length": 128,
    "chunk_overlap": 16,
    "validation_split": 0.25,
    "reddit_val_fraction": 0.25,
    "num_train_epochs": 5.0,
    "per_device_train_batch_size": 16,
    "learning_rate": 1e-3,
    "use_class_weights": True,
    "logging_steps": 10,
    "overwrite_output_dir": True,
}


def train_parser(prog: str = "train.py", description: str | None = None) -> CommandLineParser:
    parser = CommandLineParser(TRAIN_GROUPS, prog=prog, description=description)
    parser.add_switch("--no_group_by_length", "train_sampling_strategy", "random", "= --train_sampling_strategy random")
    parser.add_switch("--no_tf32", "tf32", False, "keep fp32 matmuls exact on Ampere and newer GPUs")
    parser.add_switch("--no_pin_memory", "dataloader_pin_memory", False, "= --no_dataloader_pin_memory")
    parser.add_switch("--use_wandb", "report_to", "wandb", "= --report_to wandb")
    return parser


def parse_train_args(argv: list[str] | None = None, description: str | None = None) -> TrainConfig:
    parser = train_parser(description=description)
    namespace, _ = parser.parse_known_args(argv)
    if namespace.demo:
        demo_defaults = dict(DEMO_DEFAULTS)
        if namespace.resume_from_checkpoint:  # continuing the demo run, not replacing it
            demo_defaults["overwrite_output_dir"] = False
        parser.set_defaults(**demo_defaults)
    config = TrainConfig(*parser.parse_dataclasses(argv))
    check_output_paths(
        {"--output_dir": config.training.output_dir},
        {
            "--data_dir": config.data.data_dir,
            "--reddit_file": config.data.reddit_file,
            "--model": _local_directory(config.model.model),
        },
    )
    return config


def preparation_settings(config: TrainConfig) -> dict[str, Any]:
    """Every setting that changes the prepared data (the cache key): the data, split and window settings."""
    settings = {
        f.name: getattr(part, f.name)
        for part in (config.data, config.split, config.chunking)
        for f in fields(part)
        if f.name not in NOT_IN_CACHE_KEY
    }
    return settings | {"seed": config.training.seed}


def check_window(tokenizer: PreTrainedTokenizerBase, max_length: int, overlap: int) -> int:
    """Validate the window against the tokenizer and return the number of text tokens per window."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{type(tokenizer).__name__} is not a fast tokenizer; chunking needs one")
    if tokenizer.model_max_length < 1_000_000 and max_length > tokenizer.model_max_length:
        raise UserError(f"--max_length {max_length} exceeds the tokenizer's limit {tokenizer.model_max_length}")
    content = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if content < 2:
        raise UserError(f"--max_length {max_length} leaves no room for text after the special tokens")
    if not 0 <= overlap < content:
        raise UserError(
            f"--chunk_overlap {overlap} must be at least 0 and below the {content} text tokens of a window "
            f"(--max_length {max_length} minus special tokens)"
        )
    return content


def check_positions(max_length: int, position_limit: int | None, model_name: str) -> None:
    if position_limit is not None and max_length > position_limit:
        raise UserError(f"--max_length {max_length} exceeds the {position_limit} positions of {model_name}")


# ----------------------------------------------------------------------------------------------- predict.py


# What predict.py --eval writes into --report_dir.
PREDICT_REPORT_FILES = ("metrics.json", "predictions.jsonl", "report.md", "confusion_matrix.png", "roc.png")


@dataclass
class PredictArguments:
    model_path: str = field(**_help("output directory of train.py"))
    input: str = field(**_help("JSONL, CSV, .txt, an M4 data directory, or '-' (stdin)"))
    input_format: Literal["auto", "jsonl", "csv", "txt", "m4_dir"] = field(
        default="auto", **_help("auto: by the file name (and, for stdin, by the first character)")
    )
    output: str | None = field(default=None, **_help("JSONL of predictions (default: stdout; with --eval: none)"))
    batch_size: int = field(default=64, **_help("chunks per forward pass, across documents"))
    threshold: float | None = field(default=None, **_help("decision threshold (default: the one chosen at training)"))
    aggregate: Literal["mean", "max"] = field(default="mean", **_help("over a document's chunks"))
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(default="auto", **_help("GPU autocast"))
    num_proc: int | None = field(default=None, **_help("processes for tokenisation"))
    domains: list[str] | None = field(
        default=None, **_help("M4 directory input: domains (default: the training run's)", aliases=["--train_domains"])
    )
    generators: list[str] | None = field(
        default=None,
        **_help("M4 directory input: generators (default: the training run's)", aliases=["--train_generators"]),
    )
    reddit_file: str | None = field(default=None, **_help("M4 directory input: add this file's human posts"))
    eval: bool = field(default=False, **_help("labelled input: write metrics, report and plots"))
    report_dir: str = field(default="eval_report", **_help("where --eval writes"))
    baseline_train: str | None = field(
        default=None, **_help("labelled input to fit the TF-IDF baseline on, for a side-by-side comparison")
    )

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        _require(self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold", "in [0, 1]", self.threshold)
        self.num_proc = capped_num_proc(self.num_proc)
        if self.baseline_train and not self.eval:
            raise UserError("--baseline_train is used only with --eval")
        check_output_paths(
            {"--output": self.output, "--report_dir": self.report_dir if self.eval else None},
            {
                "--model_path": self.model_path,
                "--input": self.input,
                "--baseline_train": self.baseline_train,
                "--reddit_file": self.reddit_file,
            },
        )
        if self.eval and self.output and Path(self.output).name in PREDICT_REPORT_FILES:
            if Path(self.output).resolve().parent == Path(self.report_dir).resolve():
                raise UserError(
                    f"--output {self.output} is a file that --eval writes in --report_dir; choose another --output"
                )


def parse_predict_args(argv: list[str] | None = None, description: str | None = None) -> PredictArguments:
    (arguments,) = CommandLineParser([PredictArguments], prog="predict.py", description=description).parse_dataclasses(
        argv
    )
    return arguments


# ----------------------------------------------------------------------------------------------- prepare_data.py

REDDIT_CUTOFF = "2022-11-30"  # ChatGPT's public release: posts before it are very unlikely to be machine-written


@dataclass
class PrepareM4Arguments:
    input_dir: str = field(**_help("directory of raw <domain>_<generator>.jsonl files"))
    output_dir: str = field(
        default="M4_cleaned/data", **_help("where the cleaned files go (must differ from the input)")
    )
    min_chars: int = field(default=50, **_help("drop a row whose human or machine text is shorter after cleaning"))
    report: str | None = field(default=None, **_help("the JSON table (default: OUTPUT_DIR/prepare_report.json)"))

    def __post_init__(self) -> None:
        _require(self.min_chars >= 0, "min_chars", "at least 0", self.min_chars)
        if Path(self.input_dir).resolve() == Path(self.output_dir).resolve():
            raise UserError(
                f"--output_dir must differ from --input_dir ({self.input_dir}); raw files are never overwritten"
            )
        # The output directory is replaced as a whole when complete, so it may not hold the input either.
        check_output_paths({"--output_dir": self.output_dir, "--report": self.report}, {"--input_dir": self.input_dir})
        check_output_paths({"--input_dir": self.input_dir}, {"--output_dir": self.output_dir})


@dataclass
class PrepareRedditArguments:
    input: str = field(**_help("CSV or JSONL dump with text/body, timestamp and id"))
    output: str = field(default="reddit_training_60k.jsonl", **_help("the Reddit training file"))
    cutoff_date: str = field(default=REDDIT_CUTOFF, **_help("keep posts written before this UTC date"))
    min_chars: int = field(default=50, **_help("drop posts shorter than this after cleaning"))
    max_per_month: int | None = field(default=None, **_help("cap of posts per calendar month (seeded)"))
    sample_size: int | None = field(default=None, **_help("total posts kept (seeded; default all)"))
    source: str | None = field(default=None, **_help("`source` of every post (default: the row's, else reddit)"))
    include_title: bool = field(default=False, **_help("prepend a `title` column to the body"))
    seed: int = field(default=42, **_help("seed of the month cap and the sample"))
    report: str | None = field(default=None, **_help("the JSON table (default: OUTPUT.report.json)"))

    def __post_init__(self) -> None:
        _require(self.min_chars >= 0, "min_chars", "at least 0", self.min_chars)
        _check_optional_positive("max_per_month", self.max_per_month)
        _check_optional_positive("sample_size", self.sample_size)
        try:
            date.fromisoformat(self.cutoff_date)
        except ValueError as error:
            raise UserError(f"--cutoff_date must be a date like {REDDIT_CUTOFF}, got {self.cutoff_date!r}") from error
        check_output_paths({"--output": self.output, "--report": self.report_path}, {"--input": self.input})

    @property
    def report_path(self) -> str:
        return self.report or f"{self.output}.report.json"


PREPARE_COMMANDS = {
    "m4": (PrepareM4Arguments, "raw M4 directory -> cleaned M4 directory"),
    "reddit": (PrepareRedditArguments, "Reddit dump (CSV or JSONL) -> Reddit training file"),
}


def prepare_parser(description: str | None = None) -> CommandLineParser:
    parser = CommandLineParser(prog="prepare_data.py", description=description)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{m4,reddit}", parser_class=CommandLineParser
    )
    for name, (dataclass_type, help_text) in PREPARE_COMMANDS.items():
        commands.add_parser(name, help=help_text, dataclass_types=[dataclass_type], prog=f"prepare_data.py {name}")
    return parser


def parse_prepare_args(
    argv: list[str] | None = None, description: str | None = None
) -> tuple[str, PrepareM4Arguments | PrepareRedditArguments]:
    namespace = prepare_parser(description).parse_args(argv)
    dataclass_type = PREPARE_COMMANDS[namespace.command][0]
    values = {f.name: getattr(namespace, f.name) for f in fields(dataclass_type)}
    try:
        return namespace.command, dataclass_type(**values)
    except ValueError as error:
        raise UserError(str(error)) from error
