"""Every setting of train.py, predict.py, prepare_data.py and app.py, declared once and checked once.

Each tool's settings are dataclasses parsed by `HfArgumentParser`; train.py's include a `TrainingArguments`
subclass, so every transformers training flag passes straight through and only this tool's defaults and short
spellings (`--lr`, `--epochs`, `--batch_size`, `--use_wandb`, ...) are declared here. Each `__post_init__` checks
its own values, so a bad setting ends the run before any file is read. The only checks that need more than the
settings (the window against the tokenizer, the length against the model's positions) are `check_window` and
`check_positions` below, run as soon as the tokenizer and the model config are loaded.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import os
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from datasets import config as datasets_config
from huggingface_hub import get_token, is_offline_mode
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import PreTrainedTokenizerBase, TrainingArguments
from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

from data_loaders import RequestedNames, canonical_generator
from m4_training import demo
from m4_training.cli import CommandLineParser, UserError

logger = logging.getLogger(__name__)

DEFAULT_DOMAINS = ["arxiv", "wikipedia", "reddit", "wikihow", "peerread"]
DEFAULT_GENERATORS = ["chatGPT", "davinci", "cohere", "dolly", "flant5"]
DEFAULT_VAL_GENERATOR = "flant5"
DEFAULT_CACHE_DIR = str(Path(datasets_config.HF_DATASETS_CACHE) / "m4_detector_prepared")
MAX_AUTO_DATALOADER_WORKERS = 4
# The chunk-level validation metrics the Trainer reports (evaluation.compute_chunk_metrics), for model selection.
SELECTION_METRICS = ("loss", "f1_macro", "auroc", "accuracy", "precision", "recall", "fpr_human")
LOWER_IS_BETTER = {"loss", "fpr_human"}
# `--report_to` trackers whose pip package has another name.
TRACKER_PACKAGES = {"azure_ml": "azureml-core", "comet_ml": "comet-ml", "flyte": "flytekit", "kubeflow": "kfp"}
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


def _used_paths(paths: dict[str, str | list[str] | None]) -> list[tuple[str, str]]:
    """(flag, path) of every path given; a flag may name several paths, None and '-' (stdio) are not paths."""
    pairs = []
    for flag, value in paths.items():
        for path in [value] if isinstance(value, str) else value or []:
            if path and path != "-":
                pairs.append((flag, path))
    return pairs


def check_output_paths(outputs: dict[str, str | None], protected: dict[str, str | list[str] | None]) -> None:
    """No output may be, or lie inside, an input or a model directory, nor be another output: nothing the user
    already has is ever replaced. Keys are the flags (one path, several, or None when not used)."""
    used_outputs = _used_paths(outputs)
    for flag, path in used_outputs:
        for other_flag, other in _used_paths(protected):
            if _is_within(path, other):
                where = "is" if Path(path).resolve() == Path(other).resolve() else "is inside"
                raise UserError(
                    f"{flag} {path} {where} {other_flag} {other}: writing there would replace what is read; "
                    f"choose another {flag}"
                )
    for position, (flag, path) in enumerate(used_outputs):
        for other_flag, other in used_outputs[position + 1 :]:
            if Path(path).resolve() == Path(other).resolve():
                raise UserError(f"{flag} and {other_flag} are the same path ({path}); give two paths")


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
    max_train_samples: int | None = field(
        default=None, **_help("at most N training documents (not chunks; the dry run prints both), as whole groups")
    )
    max_val_samples: int | None = field(
        default=None, **_help("at most N validation documents (not chunks), as whole groups")
    )
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


@dataclass
class SplitArguments:
    _argument_group_name = "split"

    stratified_split: bool = field(
        default=False, **_help("grouped split stratified by label and domain; off = generator hold-out")
    )
    validation_split: float = field(
        default=0.1, **_help("validation share of documents (stratified) or of groups (hold-out)")
    )
    val_generator: str | None = field(
        default=None,
        **_help(
            f"generator held out for validation, never trained on (generator hold-out flow; {DEFAULT_VAL_GENERATOR} "
            "unless --stratified_split or --val_domain); its files are loaded even if not in --train_generators"
        ),
    )
    val_domain: str | None = field(
        default=None,
        **_help(
            "domain held out for validation, never trained on (leave-one-domain-out); its files are loaded even "
            "if not in --train_domains"
        ),
    )
    reddit_val_fraction: float = field(
        default=0.1, **_help("share of Reddit posts in validation (generator and domain hold-out flows)")
    )

    def __post_init__(self) -> None:
        _check_fraction("validation_split", self.validation_split, low_open=True)
        _check_fraction("reddit_val_fraction", self.reddit_val_fraction)
        if self.val_domain is not None:
            if self.stratified_split or self.val_generator is not None:
                other = "--stratified_split" if self.stratified_split else f"--val_generator {self.val_generator}"
                raise UserError(
                    f"--val_domain {self.val_domain} and {other} choose different validation sets: pick one"
                )
            self.val_domain = self.val_domain.strip().lower()
        elif self.stratified_split:
            if self.val_generator is not None:
                logger.warning(
                    "--val_generator %s is unused: --stratified_split validates on a share of every generator",
                    self.val_generator,
                )
        elif self.val_generator is None:
            self.val_generator = DEFAULT_VAL_GENERATOR

    @property
    def flow(self) -> str:
        """stratified, generator_holdout or domain_holdout (the names the reports use)."""
        if self.val_domain is not None:
            return "domain_holdout"
        return "stratified" if self.stratified_split else "generator_holdout"


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
    test_data: list[str] | None = field(
        default=None,
        **_help(
            "held-out test sets scored after training at the validation threshold: M4 directories, labelled "
            "JSONL or CSV (texts also in the training or validation documents are removed and counted)"
        ),
    )
    test_domains: list[str] | None = field(
        default=None, **_help("M4 directories in --test_data: only these domains (default: every file there)")
    )
    test_generators: list[str] | None = field(
        default=None, **_help("M4 directories in --test_data: only these generators (default: every file there)")
    )

    def __post_init__(self) -> None:
        _check_fraction("target_fpr", self.target_fpr)
        for path in self.test_data or []:
            if not Path(path).exists():
                raise UserError(f"--test_data {path}: no such file or directory")
        if (self.test_domains or self.test_generators) and not any(Path(p).is_dir() for p in self.test_data or []):
            flag = "--test_domains" if self.test_domains else "--test_generators"
            raise UserError(f"{flag} selects files of an M4 directory; none of --test_data is a directory")


@dataclass
class RunArguments:
    _argument_group_name = "run"

    dry_run: bool = field(default=False, **_help("load, split and chunk only; write the data reports"))
    demo: bool = field(default=False, **_help("run offline on a generated sample with a tiny model"))


def check_trackers(report_to: list[str]) -> None:
    """Every --report_to tracker must be one transformers knows, with its package installed (the environment,
    checked with the settings so that a missing package stops the run before any data is read)."""
    requested = [name for name in report_to if name not in ("none", "all")]
    unknown = [name for name in requested if name not in INTEGRATION_TO_CALLBACK]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(INTEGRATION_TO_CALLBACK), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(
            f"--report_to {' '.join(unknown)}: not a tracker transformers knows{hint}; use none or any of "
            f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}"
        )
    available = set(get_available_reporting_integrations())
    if importlib.util.find_spec("flytekit") is not None:  # a tracker transformers' list above never names
        available.add("flyte")
    missing = [name for name in requested if name not in available]
    if missing:
        packages = " ".join(TRACKER_PACKAGES.get(name, name) for name in missing)
        raise UserError(
            f"--report_to {' '.join(missing)}: not installed; run `pip install {packages}` "
            "(`pip install -r requirements-trackers.txt` for TensorBoard), or pass --report_to none"
        )


def hub_repo_name(args: TrainingArguments) -> str:
    """The Hub repository --push_to_hub uploads to, as the Trainer names it: --hub_model_id or the output dir's name."""
    return args.hub_model_id or Path(args.output_dir).absolute().name


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
        default=None,
        **_help("stop after N evaluations without a better --metric_for_best_model and keep the best checkpoint"),
    )
    metric_for_best_model: str | None = field(
        default=None,
        **_help(
            f"keep the checkpoint best on this chunk-level validation metric ({', '.join(SELECTION_METRICS)}), "
            "reloaded at the end; default: loss when early stopping is on, else the last step's model"
        ),
    )
    push_to_hub: bool = field(
        default=False, **_help("upload the model, model card and reports to the Hugging Face Hub (needs a token)")
    )
    hub_model_id: str | None = field(default=None, **_help("Hub repository (user/name); default: --output_dir's name"))
    hub_private_repo: bool | None = field(default=None, **_help("create the Hub repository as private"))

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
        self._resolve_model_selection()
        self._check_trackers_and_hub()
        super().__post_init__()

    def _resolve_model_selection(self) -> None:
        """--metric_for_best_model (or early stopping) keeps the best checkpoint and reloads it at the end."""
        if self.metric_for_best_model is None:
            if self.early_stopping_patience is None:
                return
            # The chunk-level validation loss is the quantity being optimised and does not jump on a handful of
            # documents the way accuracy at a threshold does.
            self.metric_for_best_model = "loss"
        name = self.metric_for_best_model.removeprefix("eval_")
        if name not in SELECTION_METRICS:
            raise UserError(
                f"--metric_for_best_model {self.metric_for_best_model}: the validation metrics are "
                f"{', '.join(SELECTION_METRICS)} (chunk level)"
            )
        self.metric_for_best_model = f"eval_{name}"
        if self.greater_is_better is None:
            self.greater_is_better = name not in LOWER_IS_BETTER
        self.load_best_model_at_end = True

    def _check_trackers_and_hub(self) -> None:
        """A tracker or Hub upload that cannot work fails now, not after hours of data preparation and training."""
        check_trackers([self.report_to] if isinstance(self.report_to, str) else list(self.report_to or []))
        if not self.push_to_hub:
            given = [f"--{name}" for name in ("hub_model_id", "hub_private_repo") if getattr(self, name) is not None]
            if given:
                raise UserError(
                    f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} used only with --push_to_hub"
                )
            return
        if not (self.hub_token or get_token()):
            raise UserError(
                "--push_to_hub needs a Hugging Face token with write access: run `hf auth login` or set HF_TOKEN"
            )
        if is_offline_mode():
            raise UserError("--push_to_hub cannot upload while HF_HUB_OFFLINE=1 is set")
        # The Trainer's default repository name is the output directory's.
        name = hub_repo_name(self)
        flag = "--hub_model_id" if self.hub_model_id else "--output_dir"
        try:
            validate_repo_id(name)
        except HFValidationError as error:
            advice = "" if self.hub_model_id else " (the default repository name); set --hub_model_id user/name"
            raise UserError(f"--push_to_hub: {flag} {name} is not a Hub repository name{advice}: {error}") from None

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
    "num_train_epochs": 3.0,
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
            "--test_data": config.evaluation.test_data,
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


def loaded_selection(config: TrainConfig) -> tuple[list[str], list[str]]:
    """The M4 domains and generators a run reads: --train_domains/--train_generators plus the held-out one.

    The held-out domain or generator is validation data, so its files are read whether or not the training lists
    name it (`--val_generator flant5 --train_generators chatGPT davinci` validates on flant5).
    """
    domains, generators = list(config.data.train_domains), list(config.data.train_generators)
    held_out_domain, held_out_generator = config.split.val_domain, config.split.val_generator
    if held_out_domain is not None and held_out_domain not in {d.lower() for d in domains}:
        domains.append(held_out_domain)
    if config.split.flow == "generator_holdout":
        if canonical_generator(held_out_generator) not in {canonical_generator(g) for g in generators}:
            generators.append(held_out_generator)
    return domains, generators


def requested_names(config: TrainConfig) -> list[RequestedNames]:
    """The M4 names the user chose, each of which must match a file of --data_dir (a typo would drop data).

    --train_domains and --train_generators when not the defaults (the full M4 lists need not all be present in
    every directory); the held-out domain or generator always, as validation needs its files.
    """
    data, split = config.data, config.split
    names = []
    if data.train_domains != DEFAULT_DOMAINS:
        names.append(RequestedNames("--train_domains", "domains", data.train_domains))
    if data.train_generators != DEFAULT_GENERATORS:
        names.append(RequestedNames("--train_generators", "generators", data.train_generators))
    if split.val_domain is not None:
        names.append(RequestedNames("--val_domain", "domains", [split.val_domain]))
    if split.flow == "generator_holdout":
        names.append(RequestedNames("--val_generator", "generators", [split.val_generator]))
    return names


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

# A model without training_config.json is scored with windows of its positions, at most this many tokens (the
# length most published encoders were trained at), overlapping by EXTERNAL_CHUNK_OVERLAP tokens.
EXTERNAL_MAX_LENGTH = 512
EXTERNAL_CHUNK_OVERLAP = 50


# What predict.py --eval writes into --report_dir.
PREDICT_REPORT_FILES = ("metrics.json", "predictions.jsonl", "report.md", "confusion_matrix.png", "roc.png")


@dataclass
class PredictArguments:
    model_path: list[str] = field(
        **_help(
            "output directory of train.py (or one of its checkpoint-N), or any sequence-classification model "
            "directory or hub id; several: scored side by side on the same documents"
        )
    )
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
    machine_label: list[str] | None = field(
        default=None,
        **_help(
            "models without training_config.json: the id2label name of the machine class (default: found from "
            "names such as machine, ai, fake, generated, chatgpt, LABEL_1); one for all models or one per "
            "--model_path ('auto' to detect)"
        ),
    )
    max_length: int | None = field(
        default=None,
        **_help(
            "models without training_config.json: tokens per window (default: the model's positions, at most "
            f"{EXTERNAL_MAX_LENGTH})"
        ),
    )

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        _require(self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold", "in [0, 1]", self.threshold)
        _require(self.max_length is None or self.max_length >= 2, "max_length", "at least 2", self.max_length)
        self.num_proc = capped_num_proc(self.num_proc)
        if self.baseline_train and not self.eval:
            raise UserError("--baseline_train is used only with --eval")
        if self.machine_label and len(self.machine_label) not in (1, len(self.model_path)):
            raise UserError(
                f"--machine_label takes one name for every model or one per --model_path ({len(self.model_path)}), "
                f"got {len(self.machine_label)}"
            )

        check_output_paths(
            {"--output": self.output, "--report_dir": self.report_dir if self.eval else None},
            {
                "--model_path": [path for path in self.model_path if _local_directory(path)],
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

    def machine_label_for(self, index: int) -> str | None:
        """The --machine_label of the index-th --model_path (None: detect it from id2label)."""
        if not self.machine_label:
            return None
        name = self.machine_label[0 if len(self.machine_label) == 1 else index]
        return None if name.lower() == "auto" else name


def parse_predict_args(argv: list[str] | None = None, description: str | None = None) -> PredictArguments:
    (arguments,) = CommandLineParser([PredictArguments], prog="predict.py", description=description).parse_dataclasses(
        argv
    )
    return arguments


# ----------------------------------------------------------------------------------------------- summarize_runs


@dataclass
class SummarizeArguments:
    runs: list[str] = field(**_help("output directories of train.py runs (e.g. one per held-out domain)"))
    output: str | None = field(default=None, **_help("also write the Markdown tables to this file"))

    def __post_init__(self) -> None:
        if self.output:
            # `--runs outputs/lodo/* --output outputs/lodo/summary.md` run again: the glob now names the summary too.
            written = Path(self.output).resolve()
            self.runs = [run for run in self.runs if Path(run).resolve() != written]
            if not self.runs:
                raise UserError("--runs names no run directory besides --output")
        check_output_paths({"--output": self.output}, {"--runs": self.runs})


def parse_summarize_args(argv: list[str] | None = None, description: str | None = None) -> SummarizeArguments:
    parser = CommandLineParser(
        [SummarizeArguments], prog="python -m m4_training.summarize_runs", description=description
    )
    (arguments,) = parser.parse_dataclasses(argv)
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


# ----------------------------------------------------------------------------------------------- app.py

DEMO_MODEL_DIR = DEMO_DEFAULTS["output_dir"]


@dataclass
class AppArguments:
    model_path: str | None = field(
        default=None,
        **_help(
            "output directory of train.py (or one of its checkpoint-N), or any sequence-classification model "
            "directory or hub id (or use --demo)"
        ),
    )
    demo: bool = field(
        default=False,
        **_help(f"serve the demo model in {DEMO_MODEL_DIR}/, training it first (train.py --demo) if it has none"),
    )
    host: str = field(default="127.0.0.1", **_help("address to listen on; 0.0.0.0 opens the page to the network"))
    port: int = field(default=7860, **_help("port to listen on"))
    max_chars: int = field(default=200_000, **_help("most characters of one page text or API call"))
    max_upload_mb: float = field(default=2.0, **_help("largest file the page scores, in MB"))
    max_batch_size: int = field(default=8, **_help("requests the queue merges into one scoring batch"))
    batch_size: int = field(default=64, **_help("chunks per forward pass, across the texts of a batch"))
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(default="auto", **_help("GPU autocast"))
    short_text_tokens: int = field(
        default=50, **_help("texts with fewer tokens get a 'too short to judge reliably' note")
    )
    machine_label: str | None = field(
        default=None,
        **_help(
            "a model without training_config.json: the id2label name of its machine class (default: found from "
            "names such as machine, ai, fake, generated, chatgpt, LABEL_1)"
        ),
    )
    max_length: int | None = field(
        default=None,
        **_help(
            "a model without training_config.json: tokens per window (default: the model's positions, at most "
            f"{EXTERNAL_MAX_LENGTH})"
        ),
    )

    def __post_init__(self) -> None:
        if self.demo and self.model_path:
            raise UserError(f"--demo serves {DEMO_MODEL_DIR}/; give --model_path or --demo, not both")
        if not self.demo and not self.model_path:
            raise UserError("give --model_path DIR (an output directory of train.py) or --demo")
        _require(1 <= self.port <= 65535, "port", "between 1 and 65535", self.port)
        _require(self.max_chars >= 1, "max_chars", "at least 1", self.max_chars)
        _require(
            math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0,
            "max_upload_mb",
            "a positive number",
            self.max_upload_mb,
        )
        _require(self.max_batch_size >= 1, "max_batch_size", "at least 1", self.max_batch_size)
        _require(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        _require(self.short_text_tokens >= 0, "short_text_tokens", "at least 0", self.short_text_tokens)
        _require(self.max_length is None or self.max_length >= 2, "max_length", "at least 2", self.max_length)


def parse_app_args(argv: list[str] | None = None, description: str | None = None) -> AppArguments:
    (arguments,) = CommandLineParser([AppArguments], prog="app.py", description=description).parse_dataclasses(argv)
    return arguments
