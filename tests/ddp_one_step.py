"""One optimizer step of WeightedTrainer on a fixed batch: shared by the tests and, as a script, run by each
process of a two-process DDP (gloo) job: `torchrun --nproc_per_node 2 ddp_one_step.py TOKENIZER_DIR OUTPUT_DIR`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer, TrainingArguments

from chunking import ChunkCollator
from m4_training import demo
from weighted_trainer import WeightedTrainer, compute_class_weights

LABELS = [0, 1, 1, 1, 0, 1, 1, 1]


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


def make_trainer(output_root, tokenizer, batch_size, accumulation, weights):
    args = TrainingArguments(
        output_dir=str(Path(output_root) / f"run_{batch_size}_{accumulation}"),
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
        ddp_find_unused_parameters=False,
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


def weight_delta(trainer):
    """(logged loss, change of every parameter) of one training step."""
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    delta = torch.cat([(p.detach() - before[n]).flatten() for n, p in trainer.model.named_parameters()])
    return loss, delta


if __name__ == "__main__":
    tokenizer_dir, output_dir = sys.argv[1], Path(sys.argv[2])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    trainer = make_trainer(output_dir, tokenizer, len(LABELS) // 2, 1, compute_class_weights(LABELS))
    _, delta = weight_delta(trainer)
    if trainer.is_world_process_zero():
        torch.save(delta, output_dir / "delta.pt")
    trainer.end()
