"""--text_normalization: Unicode canonicalisation applied the same way in training, predict.py and the page, and
recorded in training_config.json, so a model is scored as it was trained (old runs without the key: off)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import read_jsonl, write_jsonl

import predict
from data_loaders import TextNormalization, normalize_text
from m4_training import serving
from m4_training.attacks import attack_texts
from m4_training.scoring import load_detector
from m4_training.serving import AppArguments

CLEAN = "The  colour of the sea near\nthe harbour was grey in 1998, said the captain."
# By hand: whitespace runs to one space, every digit to 0.
CLEAN_NORMALIZED = "The colour of the sea near the harbour was grey in 0000, said the captain."


@pytest.mark.parametrize("attack", ["homoglyph", "zero_width_space"])
def test_normalisation_maps_character_attacks_back_to_the_clean_text(attack):
    (attacked,), _ = attack_texts(attack, [CLEAN])
    assert attacked != CLEAN
    assert normalize_text(attacked, TextNormalization(digits=True, unicode=True)) == CLEAN_NORMALIZED
    assert normalize_text(CLEAN, TextNormalization(digits=True, unicode=True)) == CLEAN_NORMALIZED
    assert normalize_text(attacked, TextNormalization(digits=True, unicode=False)) != CLEAN_NORMALIZED


def test_nfkc_runs_before_the_digit_and_whitespace_rules():
    # Full-width digits and a no-break space: NFKC makes them ASCII, then the digit rule maps them.
    assert normalize_text("Ａ\u00a0１２", TextNormalization(digits=True, unicode=True)) == "A 00"
    assert normalize_text("ﬁne", TextNormalization(digits=False, unicode=True)) == "fine"
    assert normalize_text("ﬁne", TextNormalization(digits=False, unicode=False)) == "ﬁne"


def old_run(demo_run, tmp_path):
    """The demo run as a run from before --text_normalization existed: no such key in training_config.json."""
    copy = tmp_path / "old_run"
    shutil.copytree(demo_run, copy, ignore=shutil.ignore_patterns("checkpoint-*", "demo_inputs"))
    config = json.loads((copy / "training_config.json").read_text())
    del config["normalization"]["text_normalization"]
    (copy / "training_config.json").write_text(json.dumps(config))
    return copy


def scored(model_dir, texts, tmp_path, capsys):
    path = write_jsonl(tmp_path / "texts.jsonl", [{"id": i, "text": text} for i, text in enumerate(texts)])
    output = tmp_path / f"{model_dir.name}.jsonl"
    argv = ["--model_path", str(model_dir), "--input", str(path), "--output", str(output)]
    assert predict.main(argv) == 0, capsys.readouterr().err
    return [row["prob_machine"] for row in read_jsonl(output)]


def test_new_runs_record_it_and_predict_scores_attacked_texts_as_clean_ones(demo_run, tmp_path, capsys):
    config = json.loads((demo_run / "training_config.json").read_text())
    assert config["normalization"]["text_normalization"] is True  # the default for new runs
    assert config["arguments"]["data"]["text_normalization"] is True
    attacked = [attack_texts(name, [CLEAN])[0][0] for name in ("homoglyph", "zero_width_space")]
    new = scored(demo_run, [CLEAN, *attacked], tmp_path, capsys)
    assert new[1] == pytest.approx(new[0], abs=1e-6) and new[2] == pytest.approx(new[0], abs=1e-6)

    old = old_run(demo_run, tmp_path)
    assert load_detector(old).normalization == TextNormalization(digits=True, unicode=False)
    as_trained = scored(old, [CLEAN, *attacked], tmp_path, capsys)
    assert as_trained[0] == pytest.approx(new[0], abs=1e-6)  # a clean ASCII text: canonicalisation changes nothing
    assert abs(as_trained[1] - as_trained[0]) > 1e-4  # Cyrillic letters are other tokens
    # The demo's BERT-style tokenizer drops format characters itself (a byte-level BPE such as roberta's does not).
    assert as_trained[2] == pytest.approx(as_trained[0], abs=1e-6)


def test_the_page_shows_and_scores_the_canonical_text(demo_run, tmp_path):
    (attacked,), _ = attack_texts("homoglyph", [CLEAN])
    with serving.DetectorService(load_detector(demo_run), AppArguments(model_path=str(demo_run))) as service:
        clean_result, attacked_result = service.score_page_texts([CLEAN, attacked])
    # The page keeps the digits (the shading's offsets are those of the scored text, whose digits are all 0).
    assert attacked_result.display_text == CLEAN_NORMALIZED.replace("0000", "1998")
    assert attacked_result.prob_machine == pytest.approx(clean_result.prob_machine, abs=1e-6)
    with serving.DetectorService(load_detector(old_run(demo_run, tmp_path)), AppArguments(model_path="x")) as old:
        assert old.score_page_texts([attacked])[0].display_text != clean_result.display_text
