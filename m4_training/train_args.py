"""train.py's settings: dataclasses parsed by `HfArgumentParser`, one of them a `TrainingArguments` subclass, so
every transformers training flag passes through and only this tool's defaults and spellings are declared here.
Each `__post_init__` checks its own values, so a bad setting ends the run before any file is read.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_type_hints

import torch
from datasets import config as datasets_config
from huggingface_hub import get_token
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import TrainingArguments
from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

from data_loaders import DEFAULT_DOMAINS, DEFAULT_GENERATORS
from m4_training import cli, demo
from m4_training.attacks import ATTACK_RATES, MODEL_ATTACKS, check_attack
from m4_training.cli import CommandLineParser, UserError, require, setting
from m4_training.modeling import resolve_precision
from m4_training.robustness import parse_attacks

logger = logging.getLogger(__name__)

DEFAULT_VAL_GENERATOR = "flant5"
DEFAULT_CACHE_DIR = str(Path(datasets_config.HF_DATASETS_CACHE) / "m4_detector_prepared")
MAX_AUTO_DATALOADER_WORKERS = 4
# The chunk-level validation metrics the Trainer reports (evaluation.compute_chunk_metrics), for model selection.
SELECTION_METRICS = ("loss", "f1_macro", "auroc", "accuracy", "precision", "recall", "fpr_human")
LOWER_IS_BETTER = {"loss", "fpr_human"}
# `--report_to` trackers whose pip package has another name.
TRACKER_PACKAGES = {"azure_ml": "azureml-core", "comet_ml": "comet-ml", "flyte": "flytekit", "kubeflow": "kfp"}


@dataclass
class ModelArguments:
    _argument_group_name = "model"

    model: str | None = setting("roberta-base", "hub id or local directory (any encoder family)")
    dropout: float = setting(0.1, "dropout of the encoder and the classifier")
    freeze_base: bool = setting(False, "train only the classification head")
    freeze_layers: int = setting(0, "freeze the embeddings and the first N encoder layers")
    attn_implementation: str | None = setting(
        None, "sdpa, eager, flash_attention_2, ...; default: transformers picks (sdpa where supported)"
    )

    def __post_init__(self) -> None:
        require(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        require(self.freeze_layers >= 0, "freeze_layers", "at least 0", self.freeze_layers)


@dataclass
class DataArguments:
    _argument_group_name = "data"

    data_dir: str | None = setting("M4_cleaned/data", "directory of <domain>_<generator>.jsonl")
    reddit_file: str | None = setting(
        "reddit_training_60k.jsonl", "JSONL (or CSV) of human posts; 'none' trains on M4 only"
    )
    train_domains: list[str] = setting(DEFAULT_DOMAINS, "M4 domains to load")
    train_generators: list[str] = setting(DEFAULT_GENERATORS, "M4 generators to load")
    normalize_digits: bool = setting(True, "map every digit to 0 (training and prediction)")
    text_normalization: bool = setting(
        True,
        "canonicalise Unicode: NFKC, invisible characters removed, look-alike letters of other scripts made "
        "Latin (training and prediction; undoes homoglyph and zero-width-space attacks)",
    )
    max_train_samples: int | None = setting(
        None, "at most N training documents (not chunks; the dry run prints both), by source and label"
    )
    max_val_samples: int | None = setting(None, "at most N validation documents (not chunks), by source and label")
    augment_attacks: list[str] | None = setting(
        None, "attacks (RAID's, at RAID's rates) that make attacked copies of training documents; none: no copies"
    )
    augment_rate: float = setting(
        0.1, "share of training documents that get one attacked copy (by one of --augment_attacks, drawn per document)"
    )
    num_proc: int | None = setting(None, "processes for tokenisation")
    cache_dir: str = setting(
        DEFAULT_CACHE_DIR, "cache of prepared (split, chunked) data, keyed by data, tokenizer and settings"
    )
    no_cache: bool = setting(False, "prepare the data again and cache nothing")

    def __post_init__(self) -> None:
        cli.check_optional_positive("max_train_samples", self.max_train_samples)
        cli.check_optional_positive("max_val_samples", self.max_val_samples)
        self.augment_attacks = list(dict.fromkeys(self.augment_attacks or [])) or None  # a repeat adds nothing
        for name in self.augment_attacks or []:
            try:
                check_attack(name)
            except ValueError as error:
                raise UserError(f"--augment_attacks: {error}") from None
            if name in MODEL_ATTACKS:
                raise UserError(
                    f"--augment_attacks {name}: augmentation with model attacks ({', '.join(MODEL_ATTACKS)}) is not "
                    "supported yet (they would need a GPU pass over the corpus); choose among the others"
                )
        require(0 <= self.augment_rate <= 1, "augment_rate", "in [0, 1]", self.augment_rate)
        self.num_proc = cli.capped_num_proc(self.num_proc)
        if self.reddit_file is not None and self.reddit_file.strip().lower() in ("", "none"):
            self.reddit_file = None

    @property
    def cache(self) -> str | None:
        return None if self.no_cache else self.cache_dir


@dataclass
class SplitArguments:
    _argument_group_name = "split"

    stratified_split: bool = setting(False, "grouped split stratified by label and domain; off = generator hold-out")
    validation_split: float = setting(0.1, "validation share of documents (stratified) or of groups (hold-out)")
    val_generator: str | None = setting(
        None,
        f"generator held out for validation, never trained on (generator hold-out flow; {DEFAULT_VAL_GENERATOR} "
        "unless --stratified_split or --val_domain); its files are loaded even if not in --train_generators",
    )
    val_domain: str | None = setting(
        None,
        "domain held out for validation, never trained on (leave-one-domain-out); its files are loaded even "
        "if not in --train_domains",
    )
    reddit_val_fraction: float = setting(
        0.1, "share of Reddit posts in validation (generator and domain hold-out flows)"
    )

    def __post_init__(self) -> None:
        share, reddit_share = self.validation_split, self.reddit_val_fraction
        require(0 < share < 1, "validation_split", "between 0 and 1 (exclusive)", share)
        require(0 <= reddit_share < 1, "reddit_val_fraction", "in [0, 1)", reddit_share)
        if self.val_domain is not None:
            if self.stratified_split or self.val_generator is not None:
                other = "--stratified_split" if self.stratified_split else f"--val_generator {self.val_generator}"
                raise UserError(
                    f"--val_domain {self.val_domain} and {other} choose different validation sets: pick one"
                )
            self.val_domain = self.val_domain.strip().lower()
        elif self.stratified_split and self.val_generator is not None:
            message = "--val_generator %s is unused: --stratified_split validates on a share of every generator"
            logger.warning(message, self.val_generator)
        elif not self.stratified_split and self.val_generator is None:
            self.val_generator = DEFAULT_VAL_GENERATOR


@dataclass
class ChunkingArguments:
    _argument_group_name = "chunking"

    max_length: int = setting(512, "tokens per chunk, special tokens included")
    chunk_overlap: int = setting(50, "tokens shared by neighbouring chunks")
    pad_to_multiple_of: int = setting(8, "dynamic padding granularity per batch; 0 = exact")
    pad_to_max_length: bool = setting(False, "pad every batch to --max_length (slow; for comparisons)")

    def __post_init__(self) -> None:
        require(self.max_length >= 2, "max_length", "at least 2", self.max_length)
        require(0 <= self.chunk_overlap < self.max_length, "chunk_overlap", "in [0, --max_length)", self.chunk_overlap)
        require(self.pad_to_multiple_of >= 0, "pad_to_multiple_of", "at least 0", self.pad_to_multiple_of)


@dataclass
class EvaluationArguments:
    _argument_group_name = "evaluation"

    target_fpr: float = setting(
        0.05, "the decision threshold keeps the human-document FPR on validation at most this in every domain"
    )
    baseline: Literal["tfidf", "none"] = setting(
        "tfidf", "classical baseline fitted on the same split ('none' skips it)"
    )
    test_data: list[str] | None = setting(
        None,
        "held-out test sets scored after training at the validation threshold: M4 directories, labelled "
        "JSONL or CSV (texts also in the training or validation documents are removed and counted)",
    )
    test_domains: list[str] | None = setting(
        None, "M4 directories in --test_data: only these domains (default: every file there)"
    )
    test_generators: list[str] | None = setting(
        None, "M4 directories in --test_data: only these generators (default: every file there)"
    )
    test_attacks: list[str] | None = setting(
        None,
        "score the validation documents and --test_data sets also under these RAID attacks (NAME or NAME=RATE; "
        "'all'), at thresholds set on the clean human documents: " + ", ".join(ATTACK_RATES),
    )
    synonym_model: str | None = setting(None, "fill-mask model of the synonym attack (any masked LM)")
    paraphrase_model: str | None = setting(
        None, "seq2seq model of the paraphrase attack (RAID used DIPPER: a GPU pod's job)"
    )

    def __post_init__(self) -> None:
        require(0 <= self.target_fpr < 1, "target_fpr", "in [0, 1)", self.target_fpr)
        for path in self.test_data or []:
            if not Path(path).exists():
                raise UserError(f"--test_data {path}: no such file or directory")
        if (self.test_domains or self.test_generators) and not any(Path(p).is_dir() for p in self.test_data or []):
            flag = "--test_domains" if self.test_domains else "--test_generators"
            raise UserError(f"{flag} selects files of an M4 directory; none of --test_data is a directory")
        self.attack_rates = parse_attacks(self.test_attacks or [], "--test_attacks", self.synonym_model,
                                          self.paraphrase_model)  # fmt: skip


@dataclass
class RunArguments:
    _argument_group_name = "run"

    dry_run: bool = setting(False, "load, split and chunk only; write the data reports")
    demo: bool = setting(False, "run offline on a generated sample with a tiny model")


def check_trackers(report_to: list[str]) -> None:
    """Every --report_to tracker must be known to transformers and installed: checked before any data is read."""
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

    _argument_group_name = "training"
    _inherited_argument_group_name = "other transformers Trainer options (TrainingArguments; rarely needed)"

    output_dir: str | None = setting("outputs/m4-detector", "where the model and every report go")
    overwrite_output_dir: bool = setting(
        False, "replace a previous run in --output_dir (deletes its checkpoints and results first)"
    )
    num_train_epochs: float = setting(3.0, "training epochs (may be fractional)", aliases=["--epochs"])
    max_steps: int = setting(-1, "stop after N optimizer steps (overrides --epochs; quick runs)")
    per_device_train_batch_size: int = setting(16, "training chunks per device per step", aliases=["--batch_size"])
    per_device_eval_batch_size: int = setting(64, "evaluation chunks per device", aliases=["--eval_batch_size"])
    gradient_accumulation_steps: int = setting(1, "micro-batches per optimizer step")
    learning_rate: float = setting(2e-5, "peak learning rate (AdamW, linear decay)", aliases=["--lr"])
    weight_decay: float = setting(0.01, "AdamW weight decay")
    warmup_steps: float = setting(
        0.06, "warm-up: a share of the steps if below 1, else a step count", aliases=["--warmup_ratio"]
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = setting(
        "auto", "auto: bf16 on GPUs with native bf16, else fp16 on GPU; fp32 on CPU"
    )
    use_class_weights: bool = setting(False, "weight the loss by N/(2*N_c) of the training chunks")
    early_stopping_patience: int | None = setting(
        None, "stop after N evaluations without a better --metric_for_best_model and keep the best checkpoint"
    )
    metric_for_best_model: str | None = setting(
        None,
        f"keep the checkpoint best on this chunk-level validation metric ({', '.join(SELECTION_METRICS)}), "
        "reloaded at the end; default: loss when early stopping is on, else the last step's model",
    )
    eval_strategy: str = setting("epoch", "when to evaluate: epoch, steps (every --eval_steps) or no")
    eval_steps: float | None = setting(None, "evaluate every N steps (default: every epoch)")
    save_strategy: str | None = setting(
        None, "when to save a checkpoint: epoch, steps, best or no; default: at every evaluation (epoch if none)"
    )
    save_steps: float | None = setting(None, "save every N steps; default: every --eval_steps (or 500)")
    save_total_limit: int | None = setting(2, "checkpoints kept on disk")
    resume_from_checkpoint: str | None = setting(None, "a checkpoint-N directory, or auto (the newest in --output_dir)")
    seed: int = setting(42, "seed of the split, the sampling and the training")
    logging_steps: float = setting(50, "log the loss every N steps")
    report_to: list[str] = setting(["none"], "trackers: none, wandb, tensorboard, ... (also --use_wandb)")
    run_name: str | None = setting(None, "run name for the tracker")
    push_to_hub: bool = setting(
        False, "upload the model, model card and reports to the Hugging Face Hub (needs a token)"
    )
    hub_model_id: str | None = setting(None, "Hub repository (user/name); default: --output_dir's name")
    hub_private_repo: bool | None = setting(None, "create the Hub repository as private")
    bf16: bool = setting(False, "= --precision bf16")
    fp16: bool = setting(False, "= --precision fp16")
    tf32: bool | None = setting(None, "TF32 matmuls; default: on for Ampere and newer GPUs")
    optim: str = setting("auto", "auto: adamw_torch_fused on GPU, adamw_torch on CPU")
    torch_compile: bool = setting(False, "compile the model with torch.compile")
    dataloader_num_workers: int | None = setting(None, "default: min(4, CPUs) on GPU, 0 on CPU")
    train_sampling_strategy: str = setting(
        "group_by_length", "group_by_length (batches of similar lengths, less padding) or random"
    )
    ddp_find_unused_parameters: bool | None = setting(
        False, "several GPUs: let DDP look for parameters without gradients each step (only if DDP asks)"
    )
    remove_unused_columns: bool = setting(False, "keep doc_id and length in the batches (the collator drops them)")

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
        self._save_at_evaluations()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not on_gpu:
            self.use_cpu = True  # distributed on CPU (gloo): without it every process would train on its own
        self._resolve_model_selection()
        self._check_trackers_and_hub()
        super().__post_init__()

    def _save_at_evaluations(self) -> None:
        """A checkpoint is saved at every evaluation unless --save_strategy or --save_steps say otherwise, so that
        a checkpoint chosen on validation, or one to resume from, is never lost between two saves."""
        if self.eval_steps and self.eval_strategy == "epoch":  # --eval_steps N alone: every N steps
            self.eval_strategy = "steps"
        if self.save_strategy is None:
            at_evaluations = "epoch" if self.eval_strategy == "no" else self.eval_strategy
            self.save_strategy = "steps" if self.save_steps else at_evaluations
        if self.save_steps is None:  # the Trainer evaluates every --logging_steps when --eval_steps is not set
            steps = self.eval_strategy == "steps"
            self.save_steps = (self.eval_steps or self.logging_steps) if steps else TrainingArguments.save_steps

    def _resolve_model_selection(self) -> None:
        """--metric_for_best_model (or early stopping) keeps the best checkpoint and reloads it at the end."""
        given = self.metric_for_best_model is not None
        if not given and self.early_stopping_patience is None:
            return
        # Early stopping's default, the chunk-level validation loss, is the quantity being optimised and does not
        # jump on a handful of documents the way accuracy at a threshold does.
        name = (self.metric_for_best_model or "loss").removeprefix("eval_")
        if name not in SELECTION_METRICS:
            raise UserError(
                f"--metric_for_best_model {self.metric_for_best_model}: the validation metrics are "
                f"{', '.join(SELECTION_METRICS)} (chunk level)"
            )
        self.metric_for_best_model = f"eval_{name}"
        chosen_by = "--metric_for_best_model" if given else "--early_stopping_patience"
        if self.eval_strategy == "no":
            raise UserError(f"{chosen_by} selects on evaluations: it needs --eval_strategy epoch or steps, not no")
        if self.save_strategy not in (self.eval_strategy, "best"):
            raise UserError(
                f"{chosen_by} keeps the best evaluated checkpoint, but --save_strategy {self.save_strategy} does not "
                f"save at every evaluation (--eval_strategy {self.eval_strategy}); leave --save_strategy out"
            )
        interval = self.eval_steps or self.logging_steps
        if self.eval_strategy == "steps" and min(self.save_steps, interval) >= 1 and self.save_steps % interval:
            raise UserError(
                f"{chosen_by} keeps the best evaluated checkpoint, but --save_steps {self.save_steps:g} is not a "
                f"multiple of the evaluation interval {interval:g} (--eval_steps); leave --save_steps out"
            )
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
        if offline := cli.offline_variable():
            raise UserError(f"--push_to_hub cannot upload while {offline}={os.environ.get(offline)} is set")
        name = hub_repo_name(self)
        flag = "--hub_model_id" if self.hub_model_id else "--output_dir"
        try:
            validate_repo_id(name)
        except HFValidationError as error:
            advice = "" if self.hub_model_id else " (the default repository name); set --hub_model_id user/name"
            raise UserError(f"--push_to_hub: {flag} {name} is not a Hub repository name{advice}: {error}") from None

    def _check_values(self) -> None:
        for flag, value, minimum in (
            ("batch_size", self.per_device_train_batch_size, 1),
            ("eval_batch_size", self.per_device_eval_batch_size, 1),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps, 1),
            ("seed", self.seed, 0),
            ("save_total_limit", self.save_total_limit, 1),
            ("early_stopping_patience", self.early_stopping_patience, 1),
            ("dataloader_num_workers", self.dataloader_num_workers, 0),
        ):  # None: not set
            require(value is None or value >= minimum, flag, f"at least {minimum}", value)
        for flag, value, requirement in (
            ("lr", self.learning_rate, "a positive number"),
            ("logging_steps", self.logging_steps, "positive"),
            ("eval_steps", self.eval_steps, "positive"),
        ):
            require(value is None or (math.isfinite(value) and value > 0), flag, requirement, value)
        epochs = self.num_train_epochs
        positive_epochs = math.isfinite(epochs) and (epochs > 0 or self.max_steps > 0)
        require(positive_epochs, "epochs", "a positive number (or set --max_steps)", epochs)
        warmup = self.warmup_steps
        require(math.isfinite(warmup) and warmup >= 0, "warmup_ratio", "at least 0", warmup)
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
        groups = {name: asdict(part) for name, part in self._asdict().items() if name != "training"}
        return groups | {"training": self.training.to_dict()}


TRAIN_GROUPS = tuple(get_type_hints(TrainConfig).values())  # the dataclasses, in TrainConfig's order
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
    group = DetectorTrainingArguments._argument_group_name
    parser.add_switch("--use_wandb", "report_to", "wandb", "= --report_to wandb", group)
    parser.add_switch("--no_tf32", "tf32", False, "keep fp32 matmuls exact on Ampere and newer GPUs", group)
    parser.add_switch(
        "--no_group_by_length", "train_sampling_strategy", "random", "= --train_sampling_strategy random", group
    )
    parser.add_switch("--no_pin_memory", "dataloader_pin_memory", False, "= --no_dataloader_pin_memory", group)
    return parser


def parse_train_args(argv: list[str] | None = None, description: str | None = None) -> TrainConfig:
    parser = train_parser(description=description)
    namespace, _ = parser.parse_known_args(argv)
    if namespace.demo:
        resuming = {"overwrite_output_dir": False} if namespace.resume_from_checkpoint else {}  # continue, not replace
        parser.set_defaults(**DEMO_DEFAULTS | resuming)
    config = TrainConfig(*parser.parse_dataclasses(argv))
    cli.check_output_paths(
        {"--output_dir": config.training.output_dir},
        {
            "--data_dir": config.data.data_dir,
            "--reddit_file": config.data.reddit_file,
            "--model": cli.local_directory(config.model.model),
            "--test_data": config.evaluation.test_data,
        },
    )
    return config
