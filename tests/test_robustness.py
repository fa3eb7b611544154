"""Evaluation under attack (RAID's rule): thresholds on the clean human documents, every document attacked, the
numbers in metrics.json, report.md, attacks.png, the terminal and the trackers; bad attack settings refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_train_args, write_jsonl

import predict
import train
from m4_training import robustness, tracking
from m4_training.attacks import ATTACK_RATES, MODEL_ATTACKS
from m4_training.cli import UserError

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
CLEAN = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
ATTACKED = np.array([0.1, 0.2, 0.3, 0.55, 0.2, 0.45, 0.6, 0.9])


def test_attack_metrics_by_hand():
    result = robustness.attack_metrics(
        LABELS, CLEAN, {"whitespace": ATTACKED}, {"whitespace": 0.2}, {"whitespace": 1}, 0.35
    )
    # No clean human may be flagged at 5% or 1% of 4: the threshold is the lowest machine score above them all.
    assert result["thresholds"] == {"at_fpr_5": 0.5, "at_fpr_1": 0.5, "at_run_threshold": 0.35}
    assert result["clean"]["tpr_at_fpr_5"] == 1.0 and result["clean"]["human_fpr_at_fpr_5"] == 0.0
    attacked = result["by_attack"]["whitespace"]
    assert attacked["rate"] == 0.2 and attacked["unchanged"] == 1
    assert attacked["tpr_at_fpr_5"] == 0.5  # 0.6 and 0.9 of the machines are >= 0.5
    assert attacked["gap_tpr_at_fpr_5"] == -0.5
    assert attacked["human_fpr_at_fpr_5"] == 0.25  # the attacked human at 0.55
    # Pairs (machine, human) ranked right, ties half: 1.5 + 3 + 4 + 4 of 16.
    assert attacked["auroc"] == pytest.approx(12.5 / 16)
    assert attacked["tpr_at_run_threshold"] == 0.75 and attacked["human_fpr_at_run_threshold"] == 0.25
    assert result["n_human"] == 4 and result["n_machine"] == 4


def test_tracker_scalars_carry_every_attack():
    result = robustness.attack_metrics(
        LABELS, CLEAN, {"whitespace": ATTACKED}, {"whitespace": 0.2}, {"whitespace": 0}, 0.35
    )
    scalars = dict(tracking._attack_scalars("eval_attacks/", result))
    assert scalars["eval_attacks/whitespace/tpr_at_fpr_5"] == 0.5
    assert scalars["eval_attacks/clean/tpr_at_fpr_5"] == 1.0
    assert scalars["eval_attacks/whitespace/human_fpr_at_fpr_5"] == 0.25


def test_parse_attacks_names_rates_and_all():
    assert robustness.parse_attacks(["homoglyph", "whitespace=0.5"], "--attacks") == {
        "homoglyph": 1.0,
        "whitespace": 0.5,
    }
    without_models = robustness.parse_attacks(["all"], "--attacks")
    assert set(without_models) == set(ATTACK_RATES) - set(MODEL_ATTACKS)
    assert "synonym" in robustness.parse_attacks(["all"], "--attacks", synonym_model="some/masked-lm")


@pytest.mark.parametrize(
    "item, message",
    [
        ("homoglyf", "--attacks homoglyf: unknown attack 'homoglyf': did you mean homoglyph?"),
        ("whitespace=1.5", "--attacks whitespace=1.5: the rate of attack whitespace must be between 0 and 1, got 1.5"),
        ("whitespace=lots", "--attacks whitespace=lots: rate 'lots' is not a number"),
        ("synonym", "--attacks synonym: needs --synonym_model"),
    ],
)
def test_bad_attack_settings_are_one_line_errors(item, message):
    with pytest.raises(UserError) as error:
        robustness.parse_attacks([item], "--attacks")
    assert str(error.value).startswith(message)


def test_predict_eval_attacks(demo_run, tmp_path, capsys):
    data_dir = demo_run / "demo_inputs" / "m4"
    report_dir = tmp_path / "report"
    argv = ["--model_path", str(demo_run), "--input", str(data_dir), "--eval", "--report_dir", str(report_dir),
            "--attacks", "homoglyph", "article_deletion=1.0", "number"]  # fmt: skip
    assert predict.main(argv) == 0
    err = capsys.readouterr().err
    metrics = json.loads((report_dir / "metrics.json").read_text())
    attacks = metrics["attacks"]
    assert list(attacks["by_attack"]) == ["homoglyph", "article_deletion", "number"]
    assert attacks["by_attack"]["article_deletion"]["rate"] == 1.0
    assert attacks["n_human"] + attacks["n_machine"] == metrics["document"]["n"]
    assert attacks["clean"]["tpr_at_fpr_5"] == metrics["document"]["tpr_at_fpr_5"]
    # The model canonicalises Unicode and maps digits to 0: homoglyphs and changed digits are undone exactly.
    for name in ("homoglyph", "number"):
        assert attacks["by_attack"][name]["gap_tpr_at_fpr_5"] == 0.0
        assert attacks["by_attack"][name]["gap_auroc"] == pytest.approx(0.0, abs=1e-9)
    assert attacks["thresholds"]["at_run_threshold"] == metrics["threshold"]["value"]
    report = (report_dir / "report.md").read_text()
    assert "## Under attack" in report and "| article_deletion |" in report
    assert (report_dir / "attacks.png").stat().st_size > 0
    assert "article_deletion" in err and "TPR@5%" in err


def test_predict_attacks_refused_before_scoring(demo_run, tmp_path, capsys):
    report_dir = tmp_path / "report"
    base = ["--model_path", str(demo_run), "--input", str(demo_run / "demo_inputs" / "m4")]
    assert predict.main([*base, "--attacks", "homoglyph"]) == 2
    assert capsys.readouterr().err.strip() == "error: --attacks is used only with --eval (it needs labelled documents)"
    argv = [*base, "--eval", "--report_dir", str(report_dir), "--attacks", "synonym", "--synonym_model", str(tmp_path)]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --synonym_model: cannot load the fill-mask model") and not report_dir.exists()


HUMAN_TEXTS = [
    "we drove for hours and stopped at a diner that smelled of burnt coffee and old fries",
    "my cat knocked the plant off the shelf again, third time this week, I give up",
    "the bus was late so I walked, got soaked, and the meeting was cancelled anyway",
    "grandma's recipe calls for a pinch of salt but she always used a whole handful",
]
MACHINE_TEXTS = [
    "Moreover, the study highlights the crucial role of community engagement in sustainable growth.",
    "In conclusion, this comprehensive framework provides valuable insights for future research.",
    "Furthermore, it is important to note that the results demonstrate a significant improvement.",
    "Overall, the proposed approach offers a robust and scalable solution to the problem at hand.",
]


def test_train_test_attacks(demo_inputs, tmp_path, capsys):
    output_dir = tmp_path / "run"
    test_file = write_jsonl(
        tmp_path / "fresh.jsonl",
        [{"text": t, "label": 0} for t in HUMAN_TEXTS] + [{"text": t, "label": 1} for t in MACHINE_TEXTS],
    )
    extra = ["--test_attacks", "zero_width_space", "upper_lower", "--test_data", str(test_file)]
    assert train.main(tiny_train_args(demo_inputs, output_dir, *extra)) == 0
    out = capsys.readouterr().out
    metrics = json.loads((output_dir / "metrics.json").read_text())
    attacks = metrics["attacks"]
    assert attacks["documents"] == "validation" and list(attacks["by_attack"]) == ["zero_width_space", "upper_lower"]
    assert (
        attacks["n_human"] == metrics["document"]["n_human"]
        and attacks["n_machine"] == metrics["document"]["n_machine"]
    )
    assert attacks["clean"]["auroc"] == pytest.approx(metrics["document"]["auroc"], abs=1e-6)
    assert attacks["by_attack"]["zero_width_space"]["gap_auroc"] == pytest.approx(0.0, abs=1e-6)
    assert "Validation documents under attack:" in out and "upper_lower" in out
    assert (output_dir / "attacks.png").is_file() and "## Under attack" in (output_dir / "report.md").read_text()
    tested = metrics["test"]["fresh"]["attacks"]
    assert (tested["n_human"], tested["n_machine"]) == (4, 4) and tested["documents"] == "test set fresh"
    assert tested["clean"]["auroc"] == pytest.approx(metrics["test"]["fresh"]["document"]["auroc"], abs=1e-6)
    report = (output_dir / "report.md").read_text()
    assert "Test set fresh under attack:" in out and "#### Test set `fresh` under attack" in report
    scalars = tracking.tracker_scalars(metrics)
    assert scalars["test_fresh/attacks/upper_lower/tpr_at_fpr_5"] == tested["by_attack"]["upper_lower"]["tpr_at_fpr_5"]


def test_predict_synonym_attack_with_a_local_fill_mask_model(demo_run, tiny_model_dir, tmp_path, one_torch_thread):
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    fill_mask = tmp_path / "fill_mask"
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(fill_mask)
    BertForMaskedLM(AutoConfig.from_pretrained(tiny_model_dir)).save_pretrained(fill_mask)
    report_dir = tmp_path / "report"
    argv = ["--model_path", str(demo_run), "--input", str(demo_run / "demo_inputs" / "m4"), "--eval",
            "--report_dir", str(report_dir), "--attacks", "synonym=0.3", "--synonym_model", str(fill_mask)]  # fmt: skip
    assert predict.main(argv) == 0
    attacks = json.loads((report_dir / "metrics.json").read_text())["attacks"]
    assert list(attacks["by_attack"]) == ["synonym"] and attacks["by_attack"]["synonym"]["rate"] == 0.3
