"""Loading the tokenizer and the classifier, with dropout and layer freezing for any encoder family."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
import transformers
from huggingface_hub import model_info, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError
from transformers import CONFIG_NAME, AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from data_loaders import LABEL_NAMES
from m4_training.cli import UserError, offline_variable, one_line

logger = logging.getLogger(__name__)

ID2LABEL = dict(LABEL_NAMES)
LABEL2ID = {name: label for label, name in LABEL_NAMES.items()}
HUB_TIMEOUT_S = 10  # the one look-up of a Hub model before anything is downloaded
DROPOUT_ATTRIBUTES = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "classifier_dropout",
    "seq_classif_dropout",
)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# Families whose position ids start after the padding index, so fewer positions are usable.
PADDING_OFFSET_FAMILIES = {"roberta", "xlm-roberta", "camembert", "data2vec-text", "longformer", "xlm-roberta-xl"}


def _cannot_load(what: str, name: str, error: Exception) -> UserError:
    offline = [var for var in OFFLINE_VARIABLES if os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE")]
    if offline and not Path(name).is_dir():  # the library's message names HF_HUB_OFFLINE whichever was set
        return UserError(
            f"could not load the {what} '{name}': no local directory of that name, and {offline[0]}=1 keeps the "
            f"Hugging Face hub from being asked (nor is it in the hub's cache); give a local model directory or "
            f"unset {offline[0]}"
        )
    return UserError(
        f"could not load the {what} '{name}': tried a local directory of that name and the Hugging Face hub "
        f"(offline, or no such model?): {one_line(error)}"
    )


def check_model_source(name: str) -> None:
    """A --model from a Hub that is off or unreachable, and not cached: one line now, not a minute of retries."""
    if Path(name).is_dir():
        return
    try:
        cached = isinstance(try_to_load_from_cache(name, CONFIG_NAME), str)
    except HFValidationError:
        return  # not a repository name: the loader's error says so
    if offline := offline_variable():
        if cached:
            return
        raise UserError(
            f"--model {name}: no such local directory, and not in the Hugging Face cache while {offline}="
            f"{os.environ.get(offline)} keeps the Hub off; pass a local model directory, or unset {offline}"
        )
    try:
        model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return  # it exists; the loader says how to ask for access
    except RepositoryNotFoundError as error:
        raise UserError(
            f"--model {name}: no such local directory, nor a model on the Hugging Face Hub (a private one needs "
            "`hf auth login`)"
        ) from error
    except Exception as error:  # the network's errors: many types
        advice = "set HF_HUB_OFFLINE=1 to use its copy in the Hugging Face cache" if cached else "check the network"
        raise UserError(
            f"--model {name}: no such local directory, and the Hugging Face Hub is out of reach ({one_line(error)}); "
            f"{advice}, or pass a local model directory"
        ) from error


def load_tokenizer(name: str) -> transformers.PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as error:  # the hub client raises many types; all mean "not loadable"
        raise _cannot_load("tokenizer", name, error) from error


def load_pretrained_config(name: str, **overrides: Any) -> transformers.PretrainedConfig:
    """A model's config from a hub id or local directory: as saved, or with `overrides` set."""
    try:
        return AutoConfig.from_pretrained(name, **overrides)
    except Exception as error:
        raise _cannot_load("model config", name, error) from error


def load_config(name: str) -> transformers.PretrainedConfig | None:
    """The model's config, or None for a directory with tokenizer files only (enough for a dry run)."""
    with contextlib.suppress(UserError):  # no config to check against; load_model reports it if training needs one
        return load_pretrained_config(name)
    return None


def position_limit(config: transformers.PretrainedConfig | None) -> int | None:
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and config.model_type in PADDING_OFFSET_FAMILIES:
        limit -= (config.pad_token_id or 0) + 1
    return limit


def check_positions(max_length: int, position_limit: int | None, model_name: str) -> None:
    if position_limit is not None and max_length > position_limit:
        raise UserError(f"--max_length {max_length} exceeds the {position_limit} positions of {model_name}")


def load_model(name: str, dropout: float | None, attn_implementation: str | None = None) -> PreTrainedModel:
    """A two-label classifier ("human", "machine") from a hub id or local directory."""
    config = load_pretrained_config(name, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID)
    if dropout is not None:
        config.update({attribute: dropout for attribute in DROPOUT_ATTRIBUTES if hasattr(config, attribute)})
    # None lets transformers choose: SDPA where the architecture supports it, eager attention otherwise.
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    # transformers' load report is a coloured table that asks the user to train the new head; this run does
    # exactly that, so the same facts are logged as one plain line instead.
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            name, config=config, output_loading_info=True, **kwargs
        )
    except Exception as error:
        raise _cannot_load("model", name, error) from error
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    logger.info("%s", loading_summary(name, loading))
    return model


def loading_summary(name: str, loading: dict[str, Any]) -> str:
    """One line for `from_pretrained`'s loading info: new (randomly initialised) and unused weights."""
    parts = [f"Loaded {name}"]
    if loading.get("missing_keys"):
        parts.append(f"new weights, trained from scratch by this run: {', '.join(sorted(loading['missing_keys']))}")
    if loading.get("mismatched_keys"):
        names = sorted(key for key, *_ in loading["mismatched_keys"])
        parts.append(f"re-initialised (shape differs from the checkpoint): {', '.join(names)}")
    if loading.get("unexpected_keys"):
        parts.append(f"{len(loading['unexpected_keys'])} checkpoint weights unused (its pre-training head)")
    return "; ".join(parts)


def _encoder_layers(base_model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The encoder's stack of blocks: the longest ModuleList in the base model (BERT, RoBERTa, DeBERTa, ...)."""
    lists = [module for module in base_model.modules() if isinstance(module, torch.nn.ModuleList)]
    return max(lists, key=len, default=None)


def freeze_parameters(model: PreTrainedModel, freeze_base: bool, freeze_layers: int) -> int:
    """Freeze the whole encoder, or its embeddings and first `freeze_layers` blocks; returns frozen count."""
    base = model.base_model
    if freeze_base:
        modules = [base]
    elif freeze_layers > 0:
        layers = _encoder_layers(base)
        if layers is None:
            raise UserError(f"--freeze_layers: no encoder layer stack found in {type(model).__name__}")
        if freeze_layers > len(layers):
            raise UserError(f"--freeze_layers {freeze_layers} exceeds the model's {len(layers)} layers")
        embeddings = getattr(base, "embeddings", None) or base.get_input_embeddings()
        modules = [embeddings, *layers[:freeze_layers]]
    else:
        return 0
    trainable_before = model.num_parameters(only_trainable=True)
    for module in modules:
        module.requires_grad_(False)
    trainable = model.num_parameters(only_trainable=True)
    logger.info("Froze %d parameters; %d remain trainable", trainable_before - trainable, trainable)
    return trainable_before - trainable


def resolve_precision(precision: str, on_gpu: bool | None = None) -> str:
    """`auto`: bf16 on GPUs with native bf16 (Ampere and newer; torch counts the slow emulated bf16 of V100/T4 as
    supported), fp16 on older GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if not (torch.cuda.is_available() if on_gpu is None else on_gpu):
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
