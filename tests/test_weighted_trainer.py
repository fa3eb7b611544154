"""Class weights from chunk counts, the weighted loss by hand, and gradient-accumulation equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

import demo
from chunking import ChunkCollator
from errors import UserError
from weighted_trainer import WeightedTrainer, compute_class_weights

LABELS = [0, 1, 1, 1, 0, 1, 1, 1]


def test_class_weights_are_n_over_two_n_c():
    weights = compute_class_weights([0, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    assert weights == {"human": pytest.approx(10 / 4), "machine": pytest.approx(10 / 16)}
    assert 2 * weights["human"] + 8 * weights["machine"] == pytest.approx(10)  # mean weight per chunk is 1
    with pytest.raises(UserError, match="only machine"):
        compute_class_weights([1, 1, 1])


def tiny_model(tokenizer):
    model = demo.build_tiny_model(len(tokenizer), seed=7)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def chunk_dataset(tokenizer):
    texts = [" ".join(["word"] * (3 + 5 * i)) + f" sample {i}" for i in range(len(LABELS))]
    encoded = tokenizer(texts, truncation=True, max_length=64)
    return Dataset.from_dict({**encoded, "labels": LABELS, "doc_id": list(range(len(LABELS)))})


def make_trainer(tmp_path, tokenizer, batch_size, accumulation, weights):
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run_{batch_size}_{accumulation}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        train_sampling_strategy="sequential",
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        seed=0,
    )
    return WeightedTrainer(
        model=tiny_model(tokenizer),
        args=args,
        train_dataset=chunk_dataset(tokenizer),
        data_collator=ChunkCollator(tokenizer),
        processing_class=tokenizer,
        class_weights=weights,
    )


def test_weighted_loss_matches_hand_computation(tmp_path, tiny_tokenizer):
    weights = compute_class_weights(LABELS)
    trainer = make_trainer(tmp_path, tiny_tokenizer, 8, 1, weights)
    batch = ChunkCollator(tiny_tokenizer)([dict(row) for row in chunk_dataset(tiny_tokenizer)])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_probs = torch.log_softmax(logits.double(), dim=-1).numpy()
    w = np.array([weights["human"], weights["machine"]])
    expected = -sum(w[y] * log_probs[i, y] for i, y in enumerate(LABELS)) / len(LABELS)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        unweighted = WeightedTrainer.compute_loss(
            make_trainer(tmp_path, tiny_tokenizer, 8, 1, None), trainer.model, dict(batch)
        )
    assert unweighted.item() == pytest.approx(-np.mean([log_probs[i, y] for i, y in enumerate(LABELS)]), rel=1e-5)
    assert abs(unweighted.item() - loss.item()) > 1e-4


def test_gradient_accumulation_equals_larger_batch(tmp_path, tiny_tokenizer):
    weights = compute_class_weights(LABELS)
    results = []
    for batch_size, accumulation in ((8, 1), (4, 2), (2, 4)):
        trainer = make_trainer(tmp_path, tiny_tokenizer, batch_size, accumulation, weights)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
        delta = torch.cat([(p.detach() - before[n]).flatten() for n, p in trainer.model.named_parameters()])
        results.append((loss, delta))
    (loss_big, delta_big), *others = results
    assert delta_big.abs().max() > 1e-4  # the step really moved the weights
    for loss, delta in others:
        assert loss == pytest.approx(loss_big, rel=1e-4)
        torch.testing.assert_close(delta, delta_big, rtol=1e-4, atol=1e-6)
