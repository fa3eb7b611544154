"""Threshold selection, the TF-IDF baseline, training's evaluation outputs and predict.py --eval reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import read_jsonl
from huggingface_hub import ModelCard

import predict
from m4_training import reports
from m4_training.evaluation import choose_threshold, classification_metrics, evaluate_predictions, tfidf_baseline_probs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fpr(labels, probs, threshold):
    return float(np.mean(np.asarray(probs)[np.asarray(labels) == 0] >= threshold))


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.1, 0.25])
def test_threshold_hits_target_fpr_with_highest_recall(target):
    rng = np.random.default_rng(0)
    human, machine = rng.beta(2, 5, size=400), rng.beta(5, 2, size=300)
    labels = np.r_[np.zeros(400, int), np.ones(300, int)]
    probs = np.r_[human, machine]
    threshold = choose_threshold(labels, probs, target)
    assert fpr(labels, probs, threshold) == pytest.approx(np.floor(target * 400) / 400)  # distinct scores: exact
    next_lower = probs[probs < threshold].max()
    assert fpr(labels, probs, next_lower) > target  # any lower threshold breaks the target


def test_threshold_holds_the_target_in_every_domain():
    rng = np.random.default_rng(1)
    easy, hard = rng.uniform(0.0, 0.3, 160), rng.uniform(0.2, 0.9, 40)  # e.g. Reddit posts vs human M4 texts
    machine = rng.uniform(0.5, 1.0, 100)
    labels = np.r_[np.zeros(200, int), np.ones(100, int)]
    probs = np.r_[easy, hard, machine]
    domains = np.array(["reddit"] * 160 + ["arxiv"] * 40 + ["arxiv"] * 100)
    pooled = choose_threshold(labels, probs, 0.05)
    assert fpr(labels[40 * 4 : 200], probs[160:200], pooled) > 0.2  # pooled: the hard domain takes every error
    per_domain = choose_threshold(labels, probs, 0.05, domains)
    assert fpr(labels[160:200], probs[160:200], per_domain) <= 0.05
    assert fpr(labels[:160], probs[:160], per_domain) <= 0.05
    assert per_domain == choose_threshold(labels[160:], probs[160:], 0.05)  # set by the harder domain


def test_threshold_with_ties_and_saturated_scores():
    labels = np.array([0, 0, 0, 0, 1, 1])
    probs = np.array([0.9, 0.9, 0.2, 0.1, 0.9, 0.95])
    threshold = choose_threshold(labels, probs, 0.3)  # one false positive allowed, but two humans tie at 0.9
    assert fpr(labels, probs, threshold) == 0.0 and 0.9 < threshold <= 0.95
    assert choose_threshold(labels, probs, 0.5) == pytest.approx((0.2 + 0.9) / 2)
    saturated = choose_threshold(np.array([0, 1]), np.array([1.0, 1.0]), 0.0)
    assert saturated > 1.0 and fpr([0, 1], [1.0, 1.0], saturated) == 0.0
    with pytest.raises(ValueError):
        choose_threshold(np.array([1, 1]), np.array([0.3, 0.6]), 0.05)


def test_tfidf_baseline_learns_vocabulary():
    train_texts = ["delve into the multifaceted nature"] * 5 + ["lol tbh my buddy said no"] * 5
    probs = tfidf_baseline_probs(train_texts, [1] * 5 + [0] * 5, ["we delve into it", "lol my buddy"])
    assert probs[0] > 0.5 > probs[1]
    with pytest.raises(ValueError):
        tfidf_baseline_probs(["a", "b"], [0, 0], ["c"])


def test_evaluate_predictions_reports_m4_only_and_baseline():
    predictions = pd.DataFrame(
        {
            "label": [0, 0, 1, 1, 0, 0],
            "prob_machine": [0.1, 0.6, 0.7, 0.9, 0.2, 0.3],
            "baseline_prob_machine": [0.5, 0.2, 0.4, 0.6, 0.1, 0.7],
            "domain": ["arxiv", "arxiv", "arxiv", "arxiv", "wsb", "wsb"],
            "generator": ["human", "human", "llama2", "llama2", "human", "human"],
            "corpus": ["m4"] * 4 + ["reddit_file"] * 2,
        }
    )
    metrics = evaluate_predictions(predictions, target_fpr=0.25)
    threshold = metrics["threshold"]["value"]
    # 0.25 of arxiv's 2 humans allows no false positive there: the threshold must pass its 0.6 human
    assert threshold == pytest.approx((0.6 + 0.7) / 2) and metrics["document"]["fpr_human"] == 0.0
    m4 = predictions[predictions["corpus"] == "m4"]
    expected = classification_metrics(m4["label"], m4["prob_machine"], threshold)
    assert metrics["document"]["by_corpus"]["m4"] == expected
    assert metrics["m4_f1_macro"]["transformer"] == expected["f1_macro"]
    assert metrics["document_at_0.5"]["threshold"] == 0.5 and metrics["document_at_0.5"]["fpr_human"] == 0.25
    baseline = metrics["baseline"]
    assert baseline["document"]["fpr_human"] <= 0.25 and baseline["name"] == "tfidf_logreg"
    assert metrics["m4_f1_macro"]["tfidf_logreg"] == baseline["document"]["by_corpus"]["m4"]["f1_macro"]


def test_training_writes_threshold_baseline_report_and_model_card(demo_run):
    config = json.loads((demo_run / "training_config.json").read_text())
    metrics = json.loads((demo_run / "metrics.json").read_text())
    model_config = json.loads((demo_run / "config.json").read_text())
    threshold = metrics["threshold"]["value"]
    assert config["threshold"] == threshold == model_config["detection_threshold"] == metrics["document"]["threshold"]
    assert (
        metrics["threshold"]["target_fpr"]
        == config["target_fpr"]
        == config["arguments"]["evaluation"]["target_fpr"]
        == 0.05
    )
    predictions = read_jsonl(demo_run / "eval_predictions.jsonl")
    labels = [p["label"] for p in predictions]
    probs = [p["prob_machine"] for p in predictions]
    assert fpr(labels, probs, threshold) <= 0.05 and metrics["document"]["fpr_human"] == fpr(labels, probs, threshold)
    domains = [p["domain"] for p in predictions]
    assert threshold == choose_threshold(np.array(labels), np.array(probs), 0.05, np.array(domains))
    for domain in set(domains):
        in_domain = [i for i, d in enumerate(domains) if d == domain]
        assert fpr([labels[i] for i in in_domain], [probs[i] for i in in_domain], threshold) <= 0.05
    assert metrics["document_at_0.5"]["accuracy"] == pytest.approx(classification_metrics(labels, probs)["accuracy"])
    assert metrics["baseline"]["document"]["n"] == len(predictions)
    assert set(metrics["document"]["by_corpus"]) == {"m4", "reddit_file"}
    assert metrics["document"]["by_corpus"]["reddit_file"]["n"] == sum(
        p["domain"] == "reddit_demo" for p in predictions
    )
    card = ModelCard.load(demo_run / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    assert card.data.base_model is None  # the demo's tiny model is a local directory, unknown to the Hub
    assert f"**{threshold:.4f}**" in card.text and "generators chatgpt, davinci, dolly, flant5;" in card.text
    assert "at or below 0.05; on other human writing" in card.text.split("## Intended use and limits")[1]
    validation = {r.metric_type: r for r in card.data.eval_results}
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}  # the demo has no test set
    assert validation["false_positive_rate"].metric_value == fpr(labels, probs, threshold)
    assert validation["accuracy"].metric_value == np.mean((np.array(probs) >= threshold) == np.array(labels))
    assert validation["roc_auc"].metric_config == f"documents, threshold {threshold:.4f}"
    for name in ("confusion_matrix.png", "roc.png"):
        assert (demo_run / name).read_bytes()[:8] == PNG_MAGIC


def table_rows(markdown, heading):
    """The rows of the first table under `## heading`, as lists of cells."""
    section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_eval_writes_pngs_and_report_matching_metrics(demo_run, tmp_path, capsys):
    m4_dir = demo_run / "demo_inputs" / "m4"
    report_dir = tmp_path / "report"
    argv = ["--model_path", str(demo_run), "--input", str(m4_dir), "--eval", "--report_dir", str(report_dir)]
    argv += ["--domains", "arxiv", "wikipedia", "--generators", "flant5", "davinci"]
    assert predict.main([*argv, "--baseline_train", str(m4_dir / "reddit_chatGPT.jsonl")]) == 0
    assert capsys.readouterr().out == ""  # with --eval and no --output, predictions go to the report dir only
    for name in ("confusion_matrix.png", "roc.png"):
        data = (report_dir / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    metrics = json.loads((report_dir / "metrics.json").read_text())
    predictions = read_jsonl(report_dir / "predictions.jsonl")
    threshold = json.loads((demo_run / "training_config.json").read_text())["threshold"]
    assert metrics["threshold"]["value"] == threshold and metrics["document"]["n"] == len(predictions)
    labels = [p["label"] for p in predictions]
    expected = classification_metrics(labels, [p["prob_machine"] for p in predictions], threshold)
    assert {k: metrics["document"][k] for k in expected} == pytest.approx(expected)

    report = (report_dir / "report.md").read_text()
    keys = [key for key, _ in reports.METRIC_COLUMNS]
    overall = table_rows(report, "All documents")
    assert overall[0][:2] == ["transformer", f"{threshold:.4f}"]
    assert overall[0][2:] == [reports.cell(metrics["document"][k]) for k in keys]
    assert overall[1][2:] == [reports.cell(metrics["document_at_0.5"][k]) for k in keys]
    assert overall[2][0] == "tfidf_logreg"
    assert overall[2][2:] == [reports.cell(metrics["baseline"]["document"][k]) for k in keys]
    by_domain = table_rows(report, "By domain")
    assert [row[0] for row in by_domain] == ["arxiv", "wikipedia"]
    for row in by_domain:
        assert row[1 : 1 + len(keys)] == [reports.cell(metrics["document"]["by_domain"][row[0]][k]) for k in keys]
    generators = [row[0] for row in table_rows(report, "By generator")]
    assert generators == list(metrics["document"]["by_generator"]) == ["human", "davinci", "flant5"]


def test_tpr_at_a_fixed_fpr_against_a_hand_count():
    from m4_training.evaluation import classification_metrics, tpr_at_fpr

    # 20 human scores 0.00..0.19 (one of them, 0.95, high) and 10 machine scores.
    humans = [i / 100 for i in range(19)] + [0.95]
    machines = [0.99, 0.97, 0.96, 0.9, 0.5, 0.3, 0.18, 0.1, 0.05, 0.01]
    labels = np.array([0] * 20 + [1] * 10)
    probs = np.array(humans + machines)
    # 5% FPR allows one human flagged: threshold just above 0.18 -> machines 0.99..0.3 caught, 6 of 10.
    assert tpr_at_fpr(labels, probs, 0.05) == 0.6
    # 1% allows none: threshold above 0.95 -> 0.99 and 0.97 and 0.96, 3 of 10.
    assert tpr_at_fpr(labels, probs, 0.01) == 0.3
    metrics = classification_metrics(labels, probs)
    assert (metrics["tpr_at_fpr_5"], metrics["tpr_at_fpr_1"]) == (0.6, 0.3)
