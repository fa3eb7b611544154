"""Second field test, training side: the class weights reach the loss of the trainer train.py builds, and
checkpoints follow the evaluations."""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from conftest import tiny_train_args

import train
from m4_training import modeling
from m4_training.train_args import parse_train_args


def test_the_trainer_train_py_builds_weights_its_loss_by_the_training_chunks_classes(
    demo_inputs, tmp_path, one_torch_thread
):
    config = parse_train_args(tiny_train_args(demo_inputs, tmp_path / "out", "--reddit_file", "none"))
    tokenizer = modeling.load_tokenizer(config.model.model)
    data = train.prepare_data(config, tokenizer)
    torch.manual_seed(0)
    model = modeling.load_model(config.model.model, config.model.dropout, config.model.attn_implementation)
    trainer = train.build_trainer(config, model, tokenizer, data)
    model.eval()  # no dropout: the hand computation sees the same logits

    labels = list(data.train_chunks["labels"])
    counts = Counter(labels)
    assert counts[0] != counts[1]  # unequal classes, so that weighting changes the loss
    weights = torch.tensor([len(labels) / (2 * counts[0]), len(labels) / (2 * counts[1])])
    batch = trainer.data_collator([data.train_chunks[i] for i in range(8)])
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    # sum_i w[y_i] * CE_i over the chunk count (so accumulated micro-batches add up to one large batch)
    per_chunk = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
    expected = (weights[batch["labels"]] * per_chunk).sum() / len(per_chunk)
    unweighted = per_chunk.mean()
    assert torch.isclose(loss, expected, atol=1e-5), (loss, expected)
    assert not torch.isclose(expected, unweighted, atol=1e-4)


def test_checkpoints_follow_evaluations_every_n_steps(tmp_path):
    base = ["--data_dir", str(tmp_path / "data"), "--reddit_file", "none", "--output_dir", str(tmp_path / "out")]
    args = parse_train_args([*base, "--eval_strategy", "steps", "--eval_steps", "4"]).training
    assert (args.save_strategy, args.save_steps) == ("steps", 4)
    args = parse_train_args([*base, "--eval_steps", "6", "--metric_for_best_model", "f1_macro"]).training
    assert args.save_steps == 6 and args.load_best_model_at_end
    args = parse_train_args(base).training
    assert args.save_strategy == args.eval_strategy == "epoch"
    # A save strategy the user gives is kept.
    args = parse_train_args([*base, "--eval_steps", "4", "--save_strategy", "no"]).training
    assert args.save_strategy == "no"


def test_help_shows_this_tools_flags_before_the_librarys_with_one_default_each():
    from m4_training.train_args import train_parser

    text = train_parser().format_help()
    library = text.index("other transformers TrainingArguments options")
    for flag in (
        "--use_class_weights",
        "--precision",
        "--early_stopping_patience",
        "--stratified_split",
        "--learning_rate",
    ):
        assert text.index(f"  {flag}") < library, flag
    for flag in ("--adam_beta1", "--lr_scheduler_type", "--label_smoothing_factor"):
        assert text.index(f"  {flag}") > library, flag
    options = text.split("\n  --")
    assert not [option for option in options if option.count("default:") > 1]
    assert "default: every epoch" in text


def test_missing_local_inputs_are_named_before_the_model_is_fetched(tmp_path, capsys, monkeypatch):
    import m4_training.modeling as modeling_module

    def fetch(*args, **kwargs):
        raise AssertionError("the model was asked for before the local inputs were checked")

    monkeypatch.setattr(modeling_module, "load_tokenizer", fetch)
    out = ["--model", "some-user/some-model", "--output_dir", str(tmp_path / "out")]
    assert train.main(["--data_dir", str(tmp_path / "nowhere"), *out]) == 2
    assert capsys.readouterr().err == f"error: M4 data directory not found: {tmp_path / 'nowhere'} (set --data_dir)\n"
    (tmp_path / "m4").mkdir()
    assert train.main(["--data_dir", str(tmp_path / "m4"), "--reddit_file", str(tmp_path / "posts.jsonl"), *out]) == 2
    assert "Reddit file not found" in capsys.readouterr().err
    argv = ["--data_dir", str(tmp_path / "m4"), "--reddit_file", "none", "--test_data", str(tmp_path / "t.jsonl")]
    assert train.main([*argv, *out]) == 2
    assert capsys.readouterr().err.startswith(f"error: --test_data {tmp_path / 't.jsonl'}: no such file")


def test_offline_message_names_the_variable_that_was_set(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty hub cache
    error = modeling._cannot_load("tokenizer", "some-user/some-model", OSError("HF_HUB_OFFLINE=1 is set"))
    assert "TRANSFORMERS_OFFLINE=1" in str(error) and "HF_HUB_OFFLINE" not in str(error)


def test_train_and_predict_read_their_settings_from_one_json_file(tmp_path, capsys):
    import json

    import predict

    settings = {"data_dir": str(tmp_path / "m4"), "reddit_file": "none", "output_dir": str(tmp_path / "out")}
    settings |= {"train_generators": ["llama2"], "learning_rate": 1e-4, "use_class_weights": True}
    path = tmp_path / "args.json"
    path.write_text(json.dumps(settings))
    config = parse_train_args([str(path)])
    assert config.data.train_generators == ["llama2"] and config.data.reddit_file is None
    assert (config.training.learning_rate, config.training.use_class_weights) == (1e-4, True)
    path.write_text(json.dumps(settings | {"epoch": 3}))
    assert train.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and "['epoch']" in err and err.count("\n") == 1
    path.write_text(json.dumps({"input": "texts.jsonl", "model_path": ["a", "b"], "threshold": 0.25}))
    args = predict.parse_predict_args([str(path)])
    assert (args.input, args.model_path, args.threshold) == ("texts.jsonl", ["a", "b"], 0.25)


def test_a_negative_number_is_a_value_not_a_flag(capsys):
    import predict

    for value in ("-inf", "-1e-3", "-0.5"):
        assert predict.main(["--input", "x.jsonl", "--model_path", "m", "--threshold", value]) == 2
        assert capsys.readouterr().err == f"error: --threshold must be in [0, 1], got {float(value)}\n"
