"""train.py's evaluation as researchers run it: test sets at the validation threshold with overlap removed,
model selection on validation, validation documents scored by their own chunks, the tracker's event file, and
the Hub upload (with a stand-in for the Hub: no network)."""

from __future__ import annotations

import contextlib
import io
import json
import random
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import numpy as np
import pytest
import torch
from conftest import raw_text, read_jsonl, tiny_train_args, write_jsonl
from huggingface_hub import ModelCard
from huggingface_hub.utils import filter_repo_objects
from safetensors.numpy import load_file
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util.tensor_util import make_ndarray
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

import predict
import train
from data_loaders import TextNormalization, load_corpus, normalize_text
from m4_training import demo, evaluation, modeling, run_control, train_args
from m4_training.train_args import parse_train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def split_texts(run_dir):
    """Normalised texts of each side, from splits.jsonl's sources read straight from the files."""
    texts = {"train": set(), "val": set()}
    for row in read_jsonl(run_dir / "splits.jsonl"):
        texts[row["split"]].update(normalize_text(raw_text(s), TextNormalization(True, True)) for s in row["sources"])
    return texts


@pytest.fixture(scope="module")
def evaluated_run(demo_inputs, tmp_path_factory):
    """One tiny run with two test sets, checkpoint selection on AUROC and TensorBoard; (output_dir, stdout)."""
    data_dir = demo_inputs[0]
    root = tmp_path_factory.mktemp("evaluated")
    rng = random.Random(7)
    fresh = [
        {
            "id": f"new-{i}",
            "text": demo.synthetic_text(rng, demo.DEMO_TOPICS[i], "chatgpt" if i % 2 else None, 6),
            "label": i % 2,
        }
        for i in range(20)
    ]
    # Training-file texts with their whitespace mangled: the same documents once normalised.
    copies = [
        {"id": f"copy-{i}", "text": "  " + row["human_text"].replace(" ", "\n  ", 3), "label": "human"}
        for i, row in enumerate(read_jsonl(data_dir / "arxiv_chatGPT.jsonl"))
    ]
    test_file = write_jsonl(root / "fresh_and_copies.jsonl", fresh + copies)
    output_dir = root / "run"
    argv = tiny_train_args(demo_inputs, output_dir, "--epochs", "2", "--test_data", str(test_file), str(data_dir),
                           "--test_generators", "chatgpt", "flant5", "--report_to", "tensorboard",
                           "--metric_for_best_model", "auroc")  # fmt: skip
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert train.main(argv) == 0
    return output_dir, stdout.getvalue(), test_file


def test_overlap_with_training_and_validation_is_removed_and_counted(evaluated_run, demo_inputs):
    output_dir, _, test_file = evaluated_run
    metrics = json.loads((output_dir / "metrics.json").read_text())
    sides = split_texts(output_dir)
    normalization = TextNormalization(True, True)
    corpus = load_corpus(demo_inputs[0], list(demo.DEMO_DOMAINS), ["chatgpt", "flant5"], None, normalization)
    expected = {}
    for name, texts in (
        ("fresh_and_copies", [normalize_text(r["text"], TextNormalization(True, True)) for r in read_jsonl(test_file)]),
        ("m4", [d.text for d in corpus.documents]),
    ):
        in_train = sum(t in sides["train"] for t in texts)
        in_val = sum(t in sides["val"] and t not in sides["train"] for t in texts)
        expected[name] = {"train": in_train, "validation": in_val}
        result = metrics["test"][name]
        assert result["test_overlap_removed_by_split"] == expected[name], name
        assert result["test_overlap_removed"] == in_train + in_val
        assert result["documents_read"] == len(texts)
        assert result["document"]["n"] == len(texts) - in_train - in_val
    assert expected["m4"]["train"] > 0 and expected["m4"]["validation"] > 0
    assert expected["fresh_and_copies"]["train"] > 0  # the whitespace-mangled copies were recognised
    report = json.loads((output_dir / "data_report.json").read_text())
    assert report["test_sets"]["m4"]["test_overlap_removed_by_split"] == expected["m4"]
    kept = {r["id"] for r in read_jsonl(output_dir / "test_predictions" / "fresh_and_copies.jsonl")}
    assert {f"new-{i}" for i in range(20)} <= kept  # new texts are never removed


def test_test_sets_use_the_validation_thresholds(evaluated_run):
    output_dir, stdout, _ = evaluated_run
    metrics = json.loads((output_dir / "metrics.json").read_text())
    for name, result in metrics["test"].items():
        assert result["threshold"]["value"] == metrics["threshold"]["value"]
        assert "never on the test set" in result["threshold"]["chosen_on"]
        assert result["baseline"]["threshold"]["value"] == metrics["baseline"]["threshold"]["value"]
        rows = read_jsonl(output_dir / "test_predictions" / f"{name}.jsonl")
        labels = np.array([r["label"] for r in rows])
        probs = np.array([r["prob_machine"] for r in rows])
        threshold = metrics["threshold"]["value"]
        assert [r["pred"] for r in rows] == (probs >= threshold).astype(int).tolist()
        expected = evaluation.classification_metrics(labels, probs, threshold)
        for key in ("accuracy", "f1_macro", "auroc", "fpr_human", "recall"):
            assert result["document"][key] == pytest.approx(expected[key]), (name, key)
        baseline = np.array([r[evaluation.BASELINE_COLUMN] for r in rows])
        expected = evaluation.classification_metrics(labels, baseline, metrics["baseline"]["threshold"]["value"])
        assert result["baseline"]["document"]["f1_macro"] == pytest.approx(expected["f1_macro"])
        # A threshold chosen on the test documents themselves would differ: the one used is validation's.
        domains = np.array([r.get("domain", "unknown") for r in rows])  # the fresh file's rows name none
        rechosen = evaluation.choose_threshold(labels, probs, 0.05, domains)
        assert rechosen != pytest.approx(threshold)
    assert set(metrics["test"]["m4"]["document"]["by_generator"]) == {"human", "chatgpt", "flant5"}
    assert set(metrics["test"]["m4"]["document"]["by_domain"]) == set(demo.DEMO_DOMAINS)
    assert "Test sets (validation threshold; chose nothing)" in stdout and "m4 (tfidf_logreg)" in stdout
    report = (output_dir / "report.md").read_text()
    assert "## Test sets (not used for any choice)" in report and "### Test set `fresh_and_copies`" in report
    card = (output_dir / "README.md").read_text()
    assert "## Test metrics (documents, held out)" in card and "| m4 | transformer |" in card


def test_model_card_metadata_holds_the_document_metrics(evaluated_run):
    """The card's model-index (as the Hub reads it) against metrics recomputed from the written predictions."""
    output_dir, _, _ = evaluated_run
    threshold = json.loads((output_dir / "metrics.json").read_text())["threshold"]["value"]
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.model_name == output_dir.name
    results = {(r.dataset_split, r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    sets = {
        ("validation", "m4"): output_dir / "eval_predictions.jsonl",
        ("test", "m4"): output_dir / "test_predictions" / "m4.jsonl",
        ("test", "fresh_and_copies"): output_dir / "test_predictions" / "fresh_and_copies.jsonl",
    }
    assert {key[:2] for key in results} == set(sets)
    for (split, name), path in sets.items():
        rows = read_jsonl(path)
        labels = np.array([r["label"] for r in rows])
        probs = np.array([r["prob_machine"] for r in rows])
        predicted = (probs >= threshold).astype(int)
        expected = {
            "accuracy": accuracy_score(labels, predicted),
            "f1": f1_score(labels, predicted, average="macro"),
            "false_positive_rate": predicted[labels == 0].mean(),
            "recall": predicted[labels == 1].mean(),
            "roc_auc": roc_auc_score(labels, probs),
        }
        for metric, value in expected.items():
            assert results[split, name, metric] == pytest.approx(value), (split, name, metric)
    # Distinct values on the m4 test set, so a metric written under another's name would fail above.
    assert len({results["test", "m4", metric] for metric in ("accuracy", "f1", "recall")}) == 3


def test_test_probabilities_equal_predict_py_on_the_same_file(evaluated_run, tmp_path):
    output_dir, _, test_file = evaluated_run
    out = tmp_path / "predictions.jsonl"
    assert predict.main(["--model_path", str(output_dir), "--input", str(test_file), "--output", str(out)]) == 0
    by_id = {r["id"]: r["prob_machine"] for r in read_jsonl(out)}
    rows = read_jsonl(output_dir / "test_predictions" / "fresh_and_copies.jsonl")
    assert rows and all(by_id[r["id"]] == pytest.approx(r["prob_machine"], abs=1e-5) for r in rows)


def test_the_three_prediction_files_share_one_schema(evaluated_run, demo_inputs, tmp_path):
    """eval_predictions.jsonl, test_predictions/m4.jsonl and predict.py's predictions.jsonl of the same run (the
    last two on the same M4 directory): the same fields in the same order, each value checked against the data
    (splits.jsonl, the corpus read here, windows counted from the tokenizer) and the metrics."""
    output_dir, _, _ = evaluated_run
    data_dir = demo_inputs[0]
    report_dir = tmp_path / "report"
    # The baseline's own labelled texts: predict.py drops --baseline_train documents that it scores.
    baseline_train = write_jsonl(
        tmp_path / "baseline.jsonl",
        [{"text": f"a note of mine number {i}, scribbled fast", "label": 0} for i in range(4)]
        + [{"text": f"In summary, item {i} offers numerous benefits.", "label": 1} for i in range(4)],
    )
    argv = ["--model_path", str(output_dir), "--input", str(data_dir), "--generators", "chatgpt", "flant5", "--eval",
            "--report_dir", str(report_dir), "--baseline_train", str(baseline_train)]  # fmt: skip
    assert predict.main(argv) == 0
    files = {
        "eval": read_jsonl(output_dir / "eval_predictions.jsonl"),
        "test": read_jsonl(output_dir / "test_predictions" / "m4.jsonl"),
        "predict": read_jsonl(report_dir / "predictions.jsonl"),
    }
    fields = ["id", "prob_machine", "pred", "n_chunks", "label", "domain", "generator", "baseline_prob_machine"]
    for name, rows in files.items():
        assert rows and all(list(row) == fields for row in rows), name

    settings = json.loads((output_dir / "training_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    content = settings["chunking"]["max_length"] - tokenizer.num_special_tokens_to_add(pair=False)
    step = content - settings["chunking"]["chunk_overlap"]

    def windows(text):
        n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return 1 + max(0, -(-(n_tokens - content) // step))

    splits = {s["doc_id"]: s for s in read_jsonl(output_dir / "splits.jsonl")}
    corpus = load_corpus(data_dir, list(demo.DEMO_DOMAINS), ["chatgpt", "flant5"], None, TextNormalization(True, True))
    read_here = {
        d.doc_id: {"label": d.label, "domain": d.domain, "generator": d.generator, "n_chunks": windows(d.text)}
        for d in corpus.documents
    }
    expected = {
        "eval": {i: {k: splits[i][k] for k in ("label", "domain", "generator", "n_chunks")} for i in splits},
        "test": read_here,
        "predict": read_here,
    }
    metrics = json.loads((output_dir / "metrics.json").read_text())
    baseline_auroc = {
        "eval": metrics["baseline"]["document"]["auroc"],
        "test": metrics["test"]["m4"]["baseline"]["document"]["auroc"],
        "predict": json.loads((report_dir / "metrics.json").read_text())["baseline"]["document"]["auroc"],
    }
    for name, rows in files.items():
        for row in rows:
            assert {k: row[k] for k in ("label", "domain", "generator", "n_chunks")} == expected[name][row["id"]]
            assert row["pred"] == int(row["prob_machine"] >= settings["threshold"])
        labels = [row["label"] for row in rows]
        assert roc_auc_score(labels, [row["baseline_prob_machine"] for row in rows]) == pytest.approx(
            baseline_auroc[name]
        )
    assert {row["id"] for row in files["eval"]} == {i for i, s in splits.items() if s["split"] == "val"}
    assert len(files["predict"]) == len(corpus.documents) > len(files["test"])  # overlap left the test set only
    by_id = {row["id"]: row["prob_machine"] for row in files["predict"]}
    assert all(by_id[row["id"]] == pytest.approx(row["prob_machine"], abs=1e-5) for row in files["test"])


def test_best_checkpoint_is_reloaded_and_the_report_says_what_chose_what(evaluated_run):
    output_dir, _, _ = evaluated_run
    settings = json.loads((output_dir / "training_config.json").read_text())
    selection = settings["model_selection"]
    assert selection["metric"] == "eval_auroc" and selection["selected_on"] == "validation"
    best = Path(selection["best_checkpoint"])
    state = json.loads((best / "trainer_state.json").read_text())
    aurocs = {entry["step"]: entry["eval_auroc"] for entry in state["log_history"] if "eval_auroc" in entry}
    assert selection["best_metric"] == pytest.approx(max(aurocs.values()))
    final, kept = load_file(output_dir / "model.safetensors"), load_file(best / "model.safetensors")
    assert all(np.array_equal(final[name], kept[name]) for name in final)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert str(best) in metrics["selection"]["checkpoint"]
    report = (output_dir / "report.md").read_text()
    assert "## What chose what" in report and "validation chose the threshold and the checkpoint" in report
    assert "Test sets: chose nothing" in report


def tensorboard_scalars(output_dir):
    scalars = {}
    for path in sorted((output_dir / "runs").rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:  # the loader hands scalars over as 0-d tensors
                if value.HasField("tensor") and not value.tensor.string_val:
                    scalars[value.tag] = make_ndarray(value.tensor).item()
    return scalars


def test_tracker_gets_the_document_metrics_and_test_sets(evaluated_run):
    output_dir, _, _ = evaluated_run
    metrics = json.loads((output_dir / "metrics.json").read_text())
    logged = tensorboard_scalars(output_dir)
    assert "eval/loss" in logged  # the Trainer's own chunk-level logging is there too
    expected = {
        "eval/threshold": metrics["threshold"]["value"],
        "eval/document/f1_macro": metrics["document"]["f1_macro"],
        "eval/document/auroc": metrics["document"]["auroc"],
        "eval/document/by_domain/arxiv/auroc": metrics["document"]["by_domain"]["arxiv"]["auroc"],
        "eval/baseline/document/f1_macro": metrics["baseline"]["document"]["f1_macro"],
        "test/m4/document/auroc": metrics["test"]["m4"]["document"]["auroc"],
        "test/m4/document/by_generator/chatgpt/recall": metrics["test"]["m4"]["document"]["by_generator"]["chatgpt"][
            "recall"
        ],
        "test/m4/overlap_removed": metrics["test"]["m4"]["test_overlap_removed"],
        "test/fresh_and_copies/baseline/document/auroc": metrics["test"]["fresh_and_copies"]["baseline"]["document"][
            "auroc"
        ],
    }
    for tag, value in expected.items():
        assert logged[tag] == pytest.approx(value, rel=1e-6), tag


def test_missing_tracker_package_fails_before_anything(demo_inputs, tmp_path, capsys, monkeypatch):
    """The one test of the tracker check: only the trackers not installed are named, with their pip packages."""
    monkeypatch.setattr(train_args, "get_available_reporting_integrations", lambda: ["tensorboard"])
    output_dir = tmp_path / "out"
    argv = tiny_train_args(demo_inputs, output_dir, "--report_to", "tensorboard", "wandb", "azure_ml")
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: --report_to wandb azure_ml: not installed; run `pip install wandb azureml-core` "
        "(`pip install -r requirements-trackers.txt` for TensorBoard), or pass --report_to none"
    )
    assert not output_dir.exists()


def test_validation_documents_get_the_scores_of_their_own_chunks(demo_inputs, tmp_path):
    varied = tmp_path / "varied"  # large random weights: scores that differ from chunk to chunk
    model_config = AutoConfig.from_pretrained(demo_inputs[2], initializer_range=0.5)
    torch.manual_seed(0)
    BertForSequenceClassification(model_config).save_pretrained(varied)
    AutoTokenizer.from_pretrained(demo_inputs[2]).save_pretrained(varied)
    argv = tiny_train_args(demo_inputs, tmp_path / "out", "--eval_batch_size", "8", "--model", str(varied))
    config = parse_train_args(argv)
    tokenizer = modeling.load_tokenizer(config.model.model)
    data = train.prepare_data(config, tokenizer)
    model = modeling.load_model(config.model.model, config.model.dropout).eval()
    # The Trainer's evaluation order is length-grouped: its predictions are not in the dataset's order.
    loader = train.build_trainer(config, model, tokenizer, data).get_eval_dataloader()
    eval_order = [index for batch in loader.batch_sampler for index in batch]
    assert sorted(eval_order) == list(range(len(data.val_chunks))) != eval_order
    chunk_probs = {}  # each chunk scored alone, without padding
    with torch.no_grad():
        for chunk in data.val_chunks:
            logits = model(input_ids=torch.tensor([chunk["input_ids"]])).logits
            chunk_probs.setdefault(chunk["doc_id"], []).append(torch.softmax(logits, -1)[0, 1].item())
    metrics, predictions = train.evaluate_documents(model, tokenizer, data, config)
    assert sorted(predictions["doc_id"]) == sorted(chunk_probs) == sorted(d.doc_id for d in data.prepared.split.val)
    for doc_id, prob, n_chunks in predictions[["doc_id", "prob_machine", "n_chunks"]].itertuples(index=False):
        assert n_chunks == len(chunk_probs[doc_id]) and prob == pytest.approx(np.mean(chunk_probs[doc_id]), abs=1e-5)
    spread = [np.mean(probs) for probs in chunk_probs.values()]
    assert max(spread) - min(spread) > 0.1 and metrics["document"]["n"] == len(chunk_probs)


class FakeHub:
    """Records the Hub calls of the Trainer and of train.py: repositories created, folders uploaded."""

    def __init__(self) -> None:
        self.repos: list[tuple[str, bool | None]] = []
        self.uploads: list[dict] = []

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        self.repos.append((repo_id, private))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, repo_id, folder_path, commit_message=None, run_as_future=False, ignore_patterns=(), **_):
        folder = Path(folder_path)
        present = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        files = sorted(filter_repo_objects(present, ignore_patterns=ignore_patterns))  # what the Hub would get
        readme = (folder / "README.md").read_text() if (folder / "README.md").is_file() else None
        self.uploads.append({"repo_id": repo_id, "message": commit_message, "files": files, "readme": readme,
                             "ignore": list(ignore_patterns or [])})  # fmt: skip
        done = Future()
        done.set_result(None)
        return done if run_as_future else SimpleNamespace(commit_url="fake")


def test_push_to_hub_uploads_the_model_card_and_reports(demo_inputs, tmp_path, monkeypatch):
    hub = FakeHub()
    monkeypatch.setattr("transformers.trainer.hf_api", lambda: hub)
    monkeypatch.setattr(train, "upload_folder", hub.upload_folder)
    monkeypatch.setattr(run_control, "create_repo", hub.create_repo)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the stand-in needs no network
    output_dir = tmp_path / "tiny-detector"
    argv = tiny_train_args(demo_inputs, output_dir, "--push_to_hub", "--hub_model_id", "me/tiny-detector",
                           "--hub_private_repo", "true", "--max_train_samples", "24")  # fmt: skip
    assert train.main(argv) == 0
    assert hub.repos == [("me/tiny-detector", True)] * 2  # before any data is read, then by the Trainer
    final = hub.uploads[-1]
    assert final["repo_id"] == "me/tiny-detector" and final["message"] == "Detector, model card and reports"
    assert {"README.md", "report.md", "metrics.json", "training_config.json", "roc.png", "model.safetensors"} <= set(
        final["files"]
    )
    assert "checkpoint-*" in final["ignore"]
    # Each upload is made while the run holds its lock: the lock file is never sent, nor any checkpoint.
    assert not [f for upload in hub.uploads for f in upload["files"] if f.endswith(".lock") or "checkpoint-" in f]
    assert final["readme"] == (output_dir / "README.md").read_text()  # ours, not a card drafted by the Trainer
    assert "# Machine-generated text detector" in final["readme"]
    assert all(upload["readme"] is None for upload in hub.uploads[:-1])  # earlier pushes: the model only


def test_push_to_hub_without_token_or_offline_fails_before_training(demo_inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    output_dir = tmp_path / "out"
    assert train.main(tiny_train_args(demo_inputs, output_dir, "--push_to_hub")) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: --push_to_hub needs a Hugging Face token with write access: run `hf auth login` or set HF_TOKEN"
    )
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")  # HF_HUB_OFFLINE=1 as in every test
    assert train.main(tiny_train_args(demo_inputs, output_dir, "--push_to_hub")) == 2
    assert "--push_to_hub cannot upload while HF_HUB_OFFLINE=1 is set" in capsys.readouterr().err
    assert train.main(tiny_train_args(demo_inputs, output_dir, "--hub_model_id", "me/x")) == 2
    assert "--hub_model_id is used only with --push_to_hub" in capsys.readouterr().err
    assert not output_dir.exists()


def test_bad_test_sets_fail_before_data_preparation(demo_inputs, tmp_path, capsys):
    output_dir = tmp_path / "out"
    unlabelled = write_jsonl(tmp_path / "unlabelled.jsonl", [{"id": "a", "text": "some text", "label": 1},
                                                             {"id": "b", "text": "more text"}])  # fmt: skip
    cases = [
        (["--test_data", str(tmp_path / "missing.jsonl")], f"--test_data {tmp_path / 'missing.jsonl'}: no such file"),
        (
            ["--test_data", str(unlabelled), "--test_domains", "arxiv"],
            "--test_domains selects files of an M4 directory",
        ),
        (
            ["--test_data", str(demo_inputs[0]), "--test_generators", "gpt9"],
            "--test_generators gpt9 matches no file; generators there: chatgpt davinci dolly flant5",
        ),
        (["--test_data", str(unlabelled)], "every document needs a label (0/1 or human/machine); none for ids ['b']"),
    ]
    for flags, expected in cases:
        assert train.main(tiny_train_args(demo_inputs, output_dir, *flags)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1, err
        assert not (output_dir / "splits.jsonl").exists()  # stopped before preparing the data
