"""Loading, freezing and dropout work for several encoder families, built from configs (no download), and the
precision chosen for a GPU is the one it runs natively."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_train_args
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    RobertaConfig,
)

import train
from m4_training import modeling
from m4_training.cli import UserError

SMALL = {"vocab_size": 100, "max_position_embeddings": 64}
CONFIGS = {
    "bert": BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, **SMALL),
    "roberta": RobertaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, **SMALL),
    "distilbert": DistilBertConfig(dim=32, n_layers=3, n_heads=2, hidden_dim=64, **SMALL),
}


def saved_model(tmp_path, family):
    config = CONFIGS[family]
    config.num_labels = 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / family)
    return str(tmp_path / family)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_freeze_layers_and_base_for_each_family(tmp_path, family):
    path = saved_model(tmp_path, family)
    model = modeling.load_model(path, dropout=0.25)
    assert model.config.id2label == {0: "human", 1: "machine"}
    dropouts = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert dropouts == {0.25}
    total = sum(p.numel() for p in model.parameters())
    frozen = modeling.freeze_parameters(model, freeze_base=False, freeze_layers=2)
    layers = modeling._encoder_layers(model.base_model)
    assert len(layers) == 3
    assert all(not p.requires_grad for layer in layers[:2] for p in layer.parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    assert not any(p.requires_grad for p in model.base_model.get_input_embeddings().parameters())
    assert 0 < frozen == total - sum(p.numel() for p in model.parameters() if p.requires_grad) < total

    model = modeling.load_model(path, dropout=None)
    modeling.freeze_parameters(model, freeze_base=True, freeze_layers=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith(model.base_model_prefix + ".") for n in trainable)


def test_position_limit_and_layer_count_errors(tmp_path):
    path = saved_model(tmp_path, "roberta")
    limit = modeling.position_limit(modeling.load_config(path))
    assert limit == 62  # 64 minus RoBERTa's padding offset
    with pytest.raises(UserError, match="exceeds the 62 positions"):
        modeling.check_positions(63, limit, path)
    modeling.check_positions(62, limit, path)
    model = modeling.load_model(path, dropout=None)
    with pytest.raises(UserError, match="exceeds the model's 3 layers"):
        modeling.freeze_parameters(model, freeze_base=False, freeze_layers=4)


def test_deberta_v2_loads_and_trains_a_step_with_the_default_flags(demo_inputs, tiny_tokenizer, tmp_path):
    """DeBERTa-v2/v3 has no SDPA attention: by default transformers picks what the architecture supports."""
    deberta = DebertaV2Config(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    model_dir = tmp_path / "deberta"
    AutoModelForSequenceClassification.from_config(deberta).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    output_dir = tmp_path / "out"
    argv = tiny_train_args(demo_inputs, output_dir, "--model", str(model_dir), "--max_steps", "1", "--no_cache")
    assert train.main(argv) == 0
    state = json.loads(next(output_dir.glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] == 1
    assert json.loads((output_dir / "config.json").read_text())["model_type"] == "deberta-v2"


@pytest.mark.parametrize(
    ("capability", "native_bf16", "expected"),
    [((7, 0), False, "fp16"), ((7, 5), False, "fp16"), ((8, 0), True, "bf16")],
)
def test_auto_precision_uses_bf16_only_where_the_gpu_has_it(monkeypatch, capability, native_bf16, expected):
    """V100 (sm70) and T4 (sm75) emulate bf16 slowly: torch counts that as support unless asked for native only."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16 or including_emulation
    )
    assert modeling.resolve_precision("auto") == expected
    assert modeling.resolve_precision("fp32") == "fp32"
