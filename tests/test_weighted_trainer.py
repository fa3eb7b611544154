"""Class weights from chunk counts, the weighted loss by hand, and the same step under gradient accumulation
and under DDP as with one large batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from ddp_one_step import LABELS, chunk_dataset, make_trainer, weight_delta

from chunking import ChunkCollator
from m4_training.cli import UserError
from weighted_trainer import WeightedTrainer, compute_class_weights


def test_class_weights_are_n_over_two_n_c():
    weights = compute_class_weights([0, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    assert weights == {"human": pytest.approx(10 / 4), "machine": pytest.approx(10 / 16)}
    assert 2 * weights["human"] + 8 * weights["machine"] == pytest.approx(10)  # mean weight per chunk is 1
    with pytest.raises(UserError, match="only machine"):
        compute_class_weights([1, 1, 1])


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
    results = [
        weight_delta(make_trainer(tmp_path, tiny_tokenizer, batch_size, accumulation, weights))
        for batch_size, accumulation in ((8, 1), (4, 2), (2, 4))
    ]
    (loss_big, delta_big), *others = results
    assert delta_big.abs().max() > 1e-4  # the step really moved the weights
    for loss, delta in others:
        assert loss == pytest.approx(loss_big, rel=1e-4)
        torch.testing.assert_close(delta, delta_big, rtol=1e-4, atol=1e-6)


def test_two_ddp_processes_take_the_step_of_one_process_with_their_global_batch(tmp_path, tiny_tokenizer):
    """2 gloo processes x 4 chunks == 1 process x 8 chunks. The loss is divided by the global chunk count while DDP
    averages gradients over the processes, so it must be scaled back by the process count (the Trainer does it for
    a `compute_loss_func`): without that the step is half as long."""
    tokenizer_dir = tmp_path / "tokenizer"
    tiny_tokenizer.save_pretrained(tokenizer_dir)
    weights = compute_class_weights(LABELS)
    _, single = weight_delta(make_trainer(tmp_path / "single", tiny_tokenizer, 8, 1, weights))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    script = [str(ROOT / "tests" / "ddp_one_step.py"), str(tokenizer_dir), str(tmp_path / "ddp")]
    result = subprocess.run([*launcher, *script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    double = torch.load(tmp_path / "ddp" / "delta.pt")
    assert single.abs().max() > 1e-4
    torch.testing.assert_close(double, single, rtol=1e-4, atol=1e-6)
