"""Scoring documents with a detector: chunk probabilities in dataset order, aggregated per document.

The one scoring path of the end-of-training evaluation, predict.py and the page. Predictions are made with a
sequential loader this module owns, never with `Trainer.predict`: with length-grouped sampling transformers 5
also reorders the evaluation sampler, and positions would no longer match documents. Chunks are matched to
documents by `doc_id`, never by position.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import chunking
from chunking import check_window
from data_loaders import TextNormalization, normalize_text
from m4_training import modeling
from m4_training.cli import UserError, one_line
from m4_training.evaluation import aggregate_documents
from m4_training.files import read_json
from m4_training.modeling import check_positions, resolve_precision

logger = logging.getLogger(__name__)

SHOW_PROGRESS_FROM_CHUNKS = 512
TRAINING_CONFIG = "training_config.json"
# Where a Detector's settings come from (`Detector.settings_from`).
RUN_OF_CHECKPOINT = "training_config.json of the checkpoint's run"
MODEL_DEFAULTS = "defaults for a model without training_config.json"
# Words in id2label names that mark the machine class (and the human one) of published detectors:
# "machine-generated", "AI", "Fake", "ChatGPT", ... ; LABEL_1 is transformers' name for an unnamed label 1.
MACHINE_WORDS = {"machine", "ai", "fake", "generated", "chatgpt", "gpt", "llm", "synthetic", "artificial", "bot"}
HUMAN_WORDS = {"human", "real", "original", "authentic", "genuine"}
UNNAMED_LABELS = {"label_0": "human", "label_1": "machine"}
# A model without training_config.json is scored with windows of its positions, at most this many tokens (the
# length most published encoders were trained at), overlapping by EXTERNAL_CHUNK_OVERLAP tokens.
EXTERNAL_MAX_LENGTH = 512
EXTERNAL_CHUNK_OVERLAP = 50


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision(precision))


@torch.inference_mode()
def predict_chunk_probs(
    model: PreTrainedModel,
    chunks: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
    dtype: torch.dtype | None = None,
    show_progress: bool | None = None,
    machine_index: int = 1,
) -> np.ndarray:
    """P(machine) for every chunk, in the dataset's order: the softmax at the machine label's index. Chunks run
    longest first, so that batches hold similar lengths (little padding)."""
    lengths = chunking.column_array(chunks, "length") if "length" in chunks.column_names else np.zeros(len(chunks))
    order = np.argsort(-lengths, kind="stable")
    collator = chunking.ChunkCollator(tokenizer, pad_to_multiple_of=8)
    loader = DataLoader(chunks.select(order).with_format("python"), batch_size=batch_size, collate_fn=collator)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    in_dataset_order = np.zeros(len(chunks))
    show = len(chunks) >= SHOW_PROGRESS_FROM_CHUNKS if show_progress is None else show_progress
    for i, batch in enumerate(tqdm(loader, desc="Predicting", disable=not show, leave=False)):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "labels"}
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda" and dtype is not None):
            logits = model(**batch).logits
        probs = torch.softmax(logits.float(), dim=-1)[:, machine_index].cpu().numpy()
        # Copied out at once: keeping every batch's small array (a view of its tensor) alive fragments the
        # heap, about 5 KB per chunk of peak memory (+0.5 GB for one 48 MB document).
        in_dataset_order[order[i * batch_size : (i + 1) * batch_size]] = probs
    model.train(was_training)
    return in_dataset_order


def score_texts(
    texts: Sequence[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overlap: int,
    batch_size: int = 64,
    dtype: torch.dtype | None = None,
    aggregate: str = "mean",
    num_proc: int | None = None,
    machine_index: int = 1,
) -> tuple[pd.DataFrame, Dataset, np.ndarray]:
    """Chunk normalised texts and score them: per text (in order) `prob_machine` and `n_chunks`; the chunks
    (with their `doc_id` = position of the text) and each chunk's probability."""
    chunks = chunking.chunk_documents(chunking.text_dataset(list(texts)), tokenizer, max_length, overlap, num_proc)
    probs = predict_chunk_probs(model, chunks, tokenizer, batch_size, dtype, machine_index=machine_index)
    documents = pd.DataFrame({"doc_id": np.arange(len(texts))})
    return aggregate_documents(chunking.column_array(chunks, "doc_id"), probs, documents, how=aggregate), chunks, probs


def _label_kind(name: str, n_labels: int) -> str | None:
    """ "machine", "human" or None (cannot tell) for one id2label name."""
    name = name.strip().lower()
    if name in UNNAMED_LABELS:
        return UNNAMED_LABELS[name] if n_labels == 2 else None
    words = set(re.split(r"[^a-z0-9]+", name))
    machine, human = bool(words & MACHINE_WORDS), bool(words & HUMAN_WORDS)
    return None if machine == human else "machine" if machine else "human"


def machine_label_index(id2label: Mapping[int, str], machine_label: str | None = None, source: str = "") -> int:
    """The index of the machine class in a model's id2label: the label named `machine_label` if given, else the
    one label whose name says machine (or, with two labels, the other one of a single human-like label). Anything
    ambiguous is a one-line error that lists id2label, so a score is never silently inverted."""
    labels = {int(index): str(name) for index, name in id2label.items()}
    listing = "{" + ", ".join(f"{index}: {name}" for index, name in sorted(labels.items())) + "}"
    where = f"{source}: " if source else ""
    if machine_label is not None:
        matches = [index for index, name in labels.items() if name.strip().lower() == machine_label.strip().lower()]
        if len(matches) != 1:
            raise UserError(
                f"{where}--machine_label {machine_label} is not one of the model's labels: id2label {listing}"
            )
        return matches[0]
    kinds = {index: _label_kind(name, len(labels)) for index, name in labels.items()}
    machine = [index for index, kind in kinds.items() if kind == "machine"]
    human = [index for index, kind in kinds.items() if kind == "human"]
    if len(machine) == 1:
        return machine[0]
    if not machine and len(human) == 1 and len(labels) == 2:
        return next(index for index in labels if index != human[0])
    raise UserError(
        f"{where}cannot tell which label is the machine class from id2label {listing}; name it with --machine_label"
    )


@dataclass
class Detector:
    """A detector and the settings scoring must repeat: those it was trained with (train.py) or, for another model,
    defaults: texts as written (no normalisation at all), threshold 0.5. The weights load when first used, so bad
    input is reported before that cost."""

    path: Path | str
    tokenizer: PreTrainedTokenizerBase
    max_length: int
    chunk_overlap: int
    machine_index: int
    settings_from: str
    normalization: TextNormalization | None = None  # None: texts as written
    threshold: float = 0.5
    target_fpr: float | None = None
    domains: list[str] | None = None
    generators: list[str] | None = None

    def normalize(self, text: str) -> str:
        """A text as this detector's training saw it (unchanged for a model not trained by train.py)."""
        return text if self.normalization is None else normalize_text(text, self.normalization)

    def score(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        dtype: torch.dtype | None = None,
        aggregate: str = "mean",
        num_proc: int | None = None,
    ) -> tuple[pd.DataFrame, Dataset, np.ndarray]:
        """`score_texts` with this detector's model, tokenizer and window (texts already normalised)."""
        return score_texts(
            texts,
            self.model,
            self.tokenizer,
            self.max_length,
            self.chunk_overlap,
            batch_size,
            dtype,
            aggregate,
            num_proc,
            self.machine_index,
        )

    @cached_property
    def model(self) -> PreTrainedModel:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(self.path)
        except Exception as error:  # missing or corrupt weights raise many types
            raise UserError(f"could not load the model in {self.path}: {one_line(error)}") from error
        return model.to("cuda" if torch.cuda.is_available() else "cpu")


def load_detector(model_path: str | Path, machine_label: str | None = None, max_length: int | None = None) -> Detector:
    """A detector from a train.py output directory, a checkpoint-N directory of one (its run's settings), or any
    sequence-classification model directory or hub id (defaults): tokenizer and settings now, weights when first
    used. `machine_label` names the machine class in id2label (default: detected); `max_length` sets the window of
    a model without training_config.json (default: its positions, at most EXTERNAL_MAX_LENGTH)."""
    path = Path(model_path)
    run_dir = _run_directory(path)
    if run_dir is None:
        return _external_detector(str(model_path), machine_label, max_length)
    if max_length is not None:
        logger.warning("--max_length is ignored for %s: it is scored with the window it was trained with", path)
    config_path = run_dir / TRAINING_CONFIG
    try:
        config = read_json(config_path)
        data = config.get("arguments", {}).get("data", {})
        settings = {
            "normalization": TextNormalization(
                digits=bool(config["normalization"]["normalize_digits"]),
                # Models trained before canonicalisation existed are scored without it, as they were trained.
                unicode=bool(config["normalization"].get("text_normalization", False)),
            ),
            "max_length": int(config["chunking"]["max_length"]),
            "chunk_overlap": int(config["chunking"]["chunk_overlap"]),
            "threshold": float(config["threshold"]),
            "target_fpr": config.get("target_fpr"),
            "domains": data.get("train_domains"),
            "generators": data.get("train_generators"),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{config_path}: unreadable or incomplete training config ({error!r})") from error
    id2label = modeling.load_pretrained_config(str(path)).id2label
    machine_index = machine_label_index(id2label, None, str(path))
    # Its threshold and reports were chosen for its own machine class: another one would invert every score.
    if machine_label is not None and machine_label_index(id2label, machine_label, str(path)) != machine_index:
        raise UserError(
            f"--machine_label {machine_label}: {path} was trained by train.py, whose machine class is "
            f"'{id2label[machine_index]}'; leave --machine_label out (or auto) for it"
        )
    settings_from = TRAINING_CONFIG if run_dir == path else RUN_OF_CHECKPOINT
    # A checkpoint holds the tokenizer the Trainer saved with it; the run's directory has it too.
    has_own = any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = modeling.load_tokenizer(str(path if has_own else run_dir))
    return Detector(path, tokenizer, machine_index=machine_index, settings_from=settings_from, **settings)


def _run_directory(path: Path) -> Path | None:
    """The train.py run whose settings score `path`: itself, or the parent of a checkpoint-N; None for others."""
    if (path / TRAINING_CONFIG).is_file():
        return path
    if path.is_dir() and path.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and (path / "trainer_state.json").is_file():
        if (path.parent / TRAINING_CONFIG).is_file():
            return path.parent
        raise UserError(
            f"{path} is a checkpoint of a run that has not finished ({path.parent} has no {TRAINING_CONFIG} with "
            "its threshold and window); finish or resume that run first"
        )
    return None


def _external_detector(name: str, machine_label: str | None, max_length: int | None) -> Detector:
    """Any sequence-classification model: its own window (capped), no normalisation, threshold 0.5."""
    local = Path(name)
    if local.exists() and not local.is_dir():
        raise UserError(f"--model_path {name} is a file; pass a model directory or a hub id")
    if not local.exists() and (local.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1):
        raise UserError(f"model directory not found: {name}")
    config = modeling.load_pretrained_config(name)
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(architecture.endswith("ForSequenceClassification") for architecture in architectures):
        raise UserError(
            f"{name} is not a sequence-classification model (architectures: {', '.join(architectures) or 'none'}); "
            "pass a train.py output directory or a detector fine-tuned for text classification"
        )
    machine_index = machine_label_index(config.id2label, machine_label, name)
    tokenizer = modeling.load_tokenizer(name)
    positions = modeling.position_limit(config)
    if max_length is None:  # a tokenizer without a limit has a huge model_max_length
        max_length = min(limit for limit in (EXTERNAL_MAX_LENGTH, positions, tokenizer.model_max_length) if limit)
    check_positions(max_length, positions, name)
    content = check_window(tokenizer, max_length, 0)
    overlap = min(EXTERNAL_CHUNK_OVERLAP, content // 2)
    message = "%s has no %s: windows of %d tokens (overlap %d), texts as written, threshold 0.5, machine label %r"
    logger.info(message, name, TRAINING_CONFIG, max_length, overlap, config.id2label[machine_index])
    return Detector(name, tokenizer, max_length, overlap, machine_index, MODEL_DEFAULTS)


def covering_mean(window_tokens: np.ndarray, window_probs: np.ndarray, n_tokens: int) -> np.ndarray:
    """Each token's mean P(machine) over the windows that cover it (windows as [start, end) token ranges)."""
    sums, counts = np.zeros(n_tokens + 1), np.zeros(n_tokens + 1)
    np.add.at(sums, window_tokens[:, 0], window_probs)
    np.add.at(sums, window_tokens[:, 1], -window_probs)
    np.add.at(counts, window_tokens[:, 0], 1)
    np.add.at(counts, window_tokens[:, 1], -1)
    return np.cumsum(sums)[:n_tokens] / np.cumsum(counts)[:n_tokens]


@dataclass
class WindowScores:
    """One text as it was scored: its windows, each window's P(machine), and where its tokens are in the text."""

    text: str  # the normalised text that was scored
    prob_machine: float  # the document's P(machine): the mean over its windows, as predict.py reports it
    window_probs: np.ndarray  # per window, in order
    window_tokens: np.ndarray  # per window: [start, end) of its text tokens
    token_spans: np.ndarray  # per token: [start, end) of its characters in `text`

    @property
    def n_tokens(self) -> int:
        return len(self.token_spans)

    def token_probs(self) -> np.ndarray:
        return covering_mean(self.window_tokens, self.window_probs, self.n_tokens)


def score_windows(
    detector: Detector, texts: Sequence[str], batch_size: int = 64, dtype: torch.dtype | None = None
) -> list[WindowScores]:
    """`Detector.score` (mean aggregation) of normalised texts, with each text's windows laid over its characters:
    tokenised again with offsets, each window checked against the chunk scored (a shaded passage is what it saw)."""
    scored, chunks, probs = detector.score(texts, batch_size, dtype, "mean")
    spec = chunking.window_spec(detector.tokenizer, detector.max_length, detector.chunk_overlap)
    doc_ids = chunking.column_array(chunks, "doc_id")
    results = []
    for doc_id, (text, encoding) in enumerate(zip(texts, chunking.encode_with_offsets(detector.tokenizer, texts))):
        rows = np.flatnonzero(doc_ids == doc_id)
        windows = chunking.window_token_ranges(len(encoding.ids), spec)
        expected = [[*spec.prefix, *encoding.ids[start:end], *spec.suffix] for start, end in windows]
        if expected != chunks.select(rows)["input_ids"][:]:
            raise RuntimeError(f"text {doc_id}: the windows laid over the text differ from the chunks scored")
        spans = np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        results.append(WindowScores(text, float(scored["prob_machine"].iloc[doc_id]), probs[rows], windows, spans))
    return results
