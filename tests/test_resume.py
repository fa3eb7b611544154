"""Stop-and-resume gives the uninterrupted run's result; the output directory is protected; early stopping."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_train_args
from transformers import TrainerCallback

import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STOP_AT_STEP = 4


def tiny_run(demo_inputs, output_dir, *extra: str) -> list[str]:
    return tiny_train_args(demo_inputs, output_dir, "--eval_steps", str(STOP_AT_STEP), *extra)


class StopAt(TrainerCallback):
    """Ends training after `step`, as a pre-empted machine would (the checkpoint of that step is saved)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


class StepRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def with_callback(monkeypatch, callback: TrainerCallback) -> None:
    build_trainer = train.build_trainer

    def build_trainer_with_callback(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.add_callback(callback)
        return trainer

    monkeypatch.setattr(train, "build_trainer", build_trainer_with_callback)


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def flat_numbers(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from flat_numbers(value, f"{prefix}/{key}")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield prefix, float(tree)


def test_interrupted_and_resumed_run_matches_uninterrupted(demo_inputs, tmp_path, monkeypatch):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert train.main(tiny_run(demo_inputs, full)) == 0

    with_callback(monkeypatch, StopAt(STOP_AT_STEP))
    assert train.main(tiny_run(demo_inputs, resumed)) == 0
    monkeypatch.undo()
    interrupted_state = read_json(resumed / f"checkpoint-{STOP_AT_STEP}" / "trainer_state.json")
    assert interrupted_state["global_step"] == STOP_AT_STEP
    max_steps = interrupted_state["max_steps"]
    assert max_steps > STOP_AT_STEP + 2

    recorder = StepRecorder()
    with_callback(monkeypatch, recorder)
    assert train.main(tiny_run(demo_inputs, resumed, "--resume_from_checkpoint", "auto")) == 0
    # It continued after the checkpoint rather than training again from step 0.
    assert recorder.steps == list(range(STOP_AT_STEP + 1, max_steps + 1))
    expected, actual = read_json(full / "metrics.json"), read_json(resumed / "metrics.json")
    expected_numbers, actual_numbers = dict(flat_numbers(expected)), dict(flat_numbers(actual))
    assert expected_numbers.keys() == actual_numbers.keys()
    assert len(expected_numbers) > 20
    for key, value in expected_numbers.items():
        assert actual_numbers[key] == pytest.approx(value, abs=1e-6), key
    expected_probs = [json.loads(line)["prob_machine"] for line in open(full / "eval_predictions.jsonl")]
    actual_probs = [json.loads(line)["prob_machine"] for line in open(resumed / "eval_predictions.jsonl")]
    assert actual_probs == pytest.approx(expected_probs, abs=1e-6)
    assert read_json(full / "training_config.json")["model_selection"] is None


def test_output_dir_guard_and_resume_errors(demo_inputs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train.main(tiny_run(demo_inputs, run_dir, "--resume_from_checkpoint", "auto")) == 2
    assert "no checkpoint-N directory in" in capsys.readouterr().err

    (run_dir / "checkpoint-4").mkdir(parents=True)
    assert train.main(tiny_run(demo_inputs, run_dir, "--dry_run")) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run (checkpoint-4)" in err and "--resume_from_checkpoint auto" in err
    assert not (run_dir / "splits.jsonl").exists()

    assert train.main(tiny_run(demo_inputs, run_dir, "--resume_from_checkpoint", str(run_dir / "checkpoint-4"))) == 2
    assert "not a checkpoint directory (no trainer_state.json)" in capsys.readouterr().err

    (run_dir / "metrics.json").write_text("{}")
    (run_dir / "test_predictions").mkdir()
    assert train.main(tiny_run(demo_inputs, run_dir, "--dry_run")) == 2
    assert "holds a finished run (metrics.json)" in capsys.readouterr().err
    assert train.main(tiny_run(demo_inputs, run_dir, "--dry_run", "--overwrite_output_dir")) == 0
    assert not (run_dir / "checkpoint-4").exists() and not (run_dir / "metrics.json").exists()
    assert not (run_dir / "test_predictions").exists()
    assert (run_dir / "splits.jsonl").is_file()
    # A dry run's own outputs are not protected: trying settings again is the normal loop.
    assert train.main(tiny_run(demo_inputs, run_dir, "--dry_run")) == 0

    both = tiny_run(demo_inputs, run_dir, "--resume_from_checkpoint", "auto", "--overwrite_output_dir")
    assert train.main(both) == 2
    assert "pick one" in capsys.readouterr().err


def test_early_stopping_keeps_the_best_checkpoint(demo_inputs, tmp_path):
    output_dir = tmp_path / "early"
    # A learning rate this high makes the eval loss worse after the first evaluation, so training stops early.
    args = tiny_run(demo_inputs, output_dir, "--early_stopping_patience", "1", "--eval_steps", "2", "--lr", "0.05")
    assert train.main(args) == 0
    selection = read_json(output_dir / "training_config.json")["model_selection"]
    assert selection["metric"] == "eval_loss" and selection["selected_on"] == "validation"
    assert selection["stopped_at_step"] < selection["max_steps"]
    state = read_json(output_dir / f"checkpoint-{selection['stopped_at_step']}" / "trainer_state.json")
    eval_losses = [entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry]
    assert selection["best_metric"] == pytest.approx(min(eval_losses))
    assert eval_losses[-1] > min(eval_losses)
