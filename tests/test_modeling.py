"""Freezing and dropout work for several encoder families, built from configs (no download)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    RobertaConfig,
)

import modeling
from errors import UserError

SMALL = {"vocab_size": 100, "max_position_embeddings": 64}
CONFIGS = {
    "bert": BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, **SMALL),
    "roberta": RobertaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                             **SMALL),
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
    model = modeling.load_model(path, dropout=0.25, max_length=32)
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
    assert 0 < frozen < total

    model = modeling.load_model(path, dropout=None, max_length=32)
    modeling.freeze_parameters(model, freeze_base=True, freeze_layers=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith(model.base_model_prefix + ".") for n in trainable)


def test_position_limit_and_layer_count_errors(tmp_path):
    path = saved_model(tmp_path, "roberta")
    with pytest.raises(UserError, match="exceeds the 62 positions"):  # 64 minus RoBERTa's padding offset
        modeling.load_model(path, dropout=None, max_length=63)
    model = modeling.load_model(path, dropout=None, max_length=62)
    with pytest.raises(UserError, match="exceeds the model's 3 layers"):
        modeling.freeze_parameters(model, freeze_base=False, freeze_layers=4)
