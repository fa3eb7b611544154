"""Second field test, train.py's cases: checkpoints at every evaluation, --help with the project's flags first and
each default once, local inputs before the Hub, a Hub out of reach or switched off in one line (naming the
variable that is set), settings from a JSON file, and class weights that reach the loss of the trainer train.py
builds."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import huggingface_hub
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_train_args

import train
from m4_training import modeling
from m4_training.cli import EXIT_USAGE, parse_args_or_json_file
from m4_training.train_args import TRAIN_GROUPS, DetectorTrainingArguments, parse_train_args, train_parser


def run(argv, capsys) -> tuple[int, list[str]]:
    """Exit code and the `error: ` lines of train.main."""
    code = train.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    return code, [line for line in err.splitlines() if line.startswith("error: ")]


# ----------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ("epoch", "epoch", 500)),
        (["--eval_strategy", "steps", "--eval_steps", "4"], ("steps", "steps", 4)),
        (["--eval_steps", "4"], ("steps", "steps", 4)),
        (["--eval_strategy", "steps"], ("steps", "steps", 50)),  # the Trainer evaluates every --logging_steps
        (["--eval_strategy", "steps", "--eval_steps", "4", "--save_steps", "8"], ("steps", "steps", 8)),
        (["--eval_strategy", "steps", "--eval_steps", "4", "--save_strategy", "epoch"], ("steps", "epoch", 4)),
        (["--eval_strategy", "no"], ("no", "epoch", 500)),  # no evaluation: still a checkpoint to resume from
    ],
)
def test_checkpoints_are_saved_at_every_evaluation_unless_told_otherwise(argv, expected):
    args = parse_train_args(argv).training
    assert (args.eval_strategy.value, args.save_strategy.value, args.save_steps) == expected


def test_model_selection_errors_name_only_the_flags_given(capsys):
    selected = parse_train_args(["--eval_strategy", "steps", "--eval_steps", "4", "--metric_for_best_model", "auroc"])
    assert selected.training.load_best_model_at_end and selected.training.save_steps == 4
    cases = [
        (
            [
                "--eval_strategy",
                "steps",
                "--eval_steps",
                "4",
                "--save_strategy",
                "epoch",
                "--metric_for_best_model",
                "f1_macro",
            ],  # fmt: skip
            "error: --metric_for_best_model keeps the best evaluated checkpoint, but --save_strategy epoch does not "
            "save at every evaluation (--eval_strategy steps); leave --save_strategy out",
        ),
        (
            ["--eval_strategy", "no", "--early_stopping_patience", "2"],
            "error: --early_stopping_patience selects on evaluations: it needs --eval_strategy epoch or steps, not no",
        ),
        (
            ["--eval_steps", "4", "--save_steps", "6", "--metric_for_best_model", "loss"],
            "error: --metric_for_best_model keeps the best evaluated checkpoint, but --save_steps 6 is not a multiple "
            "of the evaluation interval 4 (--eval_steps); leave --save_steps out",
        ),
    ]
    for argv, message in cases:
        assert run(argv, capsys) == (EXIT_USAGE, [message])
    code, errors = run(["--eval_strategy", "steps", "--metric_for_best_model", "loss", "--output_dir", "/"], capsys)
    assert errors and "--save_strategy" not in errors[0]  # the user gave none


# ----------------------------------------------------------------------------------------------- --help


def test_help_lists_every_project_flag_first_with_one_default_each():
    text = train_parser().format_help()
    trainer_options = text.index("\nother transformers Trainer options")
    project, rest = text[:trainer_options], text[trainer_options:]
    declared = list(vars(DetectorTrainingArguments)["__annotations__"])
    ours = [f.name for group in TRAIN_GROUPS[:-1] for f in fields(group)] + declared
    ours += ["use_wandb", "no_tf32", "no_group_by_length", "no_pin_memory"]
    for name in ours:
        flag = re.compile(rf"(?<![\w-])--{name}(?![\w-])")
        assert flag.search(project) and not flag.search(rest), name
    assert {"--lr_scheduler_type", "--max_grad_norm"} <= set(re.findall(r"(?<![\w-])--[a-z_]+", rest))
    for key in ("--use_class_weights", "--precision", "--early_stopping_patience"):
        assert text.index("\ntraining:\n") < text.index(key) < text.index("--eval_strategy EVAL")  # its first ones
    blocks = re.split(r"\n(?=  -)", text)  # one block per option
    assert len(blocks) > 150
    twice = [block.split()[0] for block in blocks if re.search(r"default.*\(default: ", " ".join(block.split()))]
    assert not twice
    assert "evaluate every N steps (default: every epoch) --save_strategy" in " ".join(text.split())


# ----------------------------------------------------------------------------------------------- inputs, Hub


def never(*args, **kwargs):
    raise AssertionError("the Hub was asked before the local inputs were checked")


def test_local_inputs_are_checked_before_the_hub_is_asked(demo_inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(modeling, "model_info", never)
    monkeypatch.setattr(modeling, "load_tokenizer", never)
    missing = tmp_path / "no_such_dir"
    code, errors = run(["--output_dir", tmp_path / "out", "--data_dir", missing], capsys)  # --model roberta-base
    assert (code, errors) == (EXIT_USAGE, [f"error: M4 data directory not found: {missing} (set --data_dir)"])
    argv = tiny_train_args(demo_inputs, tmp_path / "out", "--model", "roberta-base", "--reddit_file", tmp_path / "r")
    assert run(argv, capsys) == (
        EXIT_USAGE,
        [f"error: Reddit file not found: {tmp_path / 'r'} (set --reddit_file, or --reddit_file none)"],
    )
    assert not (tmp_path / "out").exists()


def test_a_hub_out_of_reach_is_one_line_without_retries(demo_inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    asked = []

    def unreachable(name, timeout):
        asked.append((name, timeout))
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(modeling, "model_info", unreachable)
    monkeypatch.setattr(modeling, "load_tokenizer", never)
    argv = tiny_train_args(demo_inputs, tmp_path / "out", "--model", "nobody/no-such-model")
    code, errors = run(argv, capsys)
    assert asked == [("nobody/no-such-model", modeling.HUB_TIMEOUT_S)]
    assert (code, errors) == (
        EXIT_USAGE,
        [
            "error: --model nobody/no-such-model: no such local directory, and the Hugging Face Hub is out of reach "
            "([Errno -2] Name or service not known); check the network, or pass a local model directory"
        ],
    )


def test_offline_errors_name_the_variable_that_is_set(demo_inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")  # huggingface_hub is offline (as in every test)
    monkeypatch.setattr(modeling, "load_tokenizer", never)
    code, errors = run(tiny_train_args(demo_inputs, tmp_path / "out", "--model", "nobody/no-such-model"), capsys)
    assert (code, errors) == (
        EXIT_USAGE,
        [
            "error: --model nobody/no-such-model: no such local directory, and not in the Hugging Face cache while "
            "TRANSFORMERS_OFFLINE=1 keeps the Hub off; pass a local model directory, or unset TRANSFORMERS_OFFLINE"
        ],
    )
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    code, errors = run(tiny_train_args(demo_inputs, tmp_path / "out", "--push_to_hub"), capsys)
    assert errors == ["error: --push_to_hub cannot upload while TRANSFORMERS_OFFLINE=1 is set"]


# ----------------------------------------------------------------------------------------------- JSON settings


def test_settings_from_a_json_file_are_the_same_as_flags(demo_inputs, tmp_path, capsys):
    data_dir, reddit_file, model_dir = demo_inputs
    flags = tiny_train_args(demo_inputs, tmp_path / "out", "--dry_run", "--stratified_split", "--no_cache")
    settings = {
        "data_dir": str(data_dir), "reddit_file": str(reddit_file), "model": str(model_dir),
        "train_domains": ["wikipedia", "reddit"], "train_generators": ["chatGPT", "davinci"],
        "max_length": 64, "chunk_overlap": 8, "max_train_samples": 64, "max_val_samples": 40, "batch_size": 8,
        "lr": 1e-3, "epochs": 1, "logging_steps": 5, "use_class_weights": True, "output_dir": str(tmp_path / "out"),
        "dry_run": True, "stratified_split": True, "no_cache": True, "lr_scheduler_kwargs": {"power": 2.0},
    }  # fmt: skip
    flags[flags.index("--train_domains") + 1 : flags.index("--train_generators")] = settings["train_domains"]
    flags[flags.index("--train_generators") + 1 : flags.index("--max_length")] = settings["train_generators"]
    flags += ["--lr_scheduler_kwargs", '{"power": 2.0}']
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    from_file = parse_train_args(parse_args_or_json_file(train_parser(), [str(path)])).as_dict()
    assert from_file == parse_train_args([str(f) for f in flags]).as_dict()
    assert from_file["training"]["lr_scheduler_kwargs"] == {"power": 2.0}
    assert run([path], capsys) == (0, [])
    assert (tmp_path / "out" / "data_report.json").is_file()

    bad = tmp_path / "bad.json"
    for content, message in [
        ({"lr": 1e-3, "epochz": 2}, f'error: {bad}: "epochz" is not a setting of train.py (see train.py --help)'),
        ({"epochs": "many"}, f"error: {bad}: argument --num_train_epochs/--num-train-epochs/--epochs: invalid float"),
        ({"train_domains": []}, f'error: {bad}: "train_domains": [] is not a value; leave the key out for its default'),
        (["--lr", "1e-3"], f'error: {bad}: must hold one JSON object of settings, such as {{"output_dir": "out"}}'),
    ]:
        bad.write_text(json.dumps(content))
        code, errors = run([bad], capsys)
        assert code == EXIT_USAGE and len(errors) == 1 and errors[0].startswith(message), errors


# ----------------------------------------------------------------------------------------------- class weights


def test_the_trainer_train_py_builds_weights_the_loss_by_the_training_label_counts(
    demo_inputs, tmp_path, one_torch_thread
):
    config = parse_train_args(tiny_train_args(demo_inputs, tmp_path / "out", "--no_cache"))
    tokenizer = modeling.load_tokenizer(config.model.model)
    data = train.prepare_data(config, tokenizer)
    model = modeling.load_model(config.model.model, config.model.dropout).eval()
    trainer = train.build_trainer(config, model, tokenizer, data)
    chunks = data.prepared.train_chunks
    labels = np.array(list(chunks["labels"]))
    counts = np.bincount(labels, minlength=2)
    assert counts.min() > 0 and counts[0] != counts[1]
    weights = torch.tensor(len(labels) / (2.0 * counts), dtype=torch.float64)  # w_c = N / (2 N_c), by hand
    rows = [chunks[int(i)] for i in [*np.flatnonzero(labels == 0)[:3], *np.flatnonzero(labels == 1)[:5]]]
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    target = batch["labels"]
    expected = F.cross_entropy(logits, target, weight=weights, reduction="sum") / len(target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(expected.item() - F.cross_entropy(logits, target).item()) > 1e-3  # weighting shows in this batch
