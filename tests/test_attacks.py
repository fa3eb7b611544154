"""RAID-style attacks (m4_training/attacks.py) and the canonicalisation that undoes the character-level ones."""

from __future__ import annotations

import json
import math
import unicodedata

import pytest

from m4_training.attacks import ATTACK_RATES, attack_texts, check_attack
from m4_training.cleaning import canonicalize

ZWSP = "\u200b"


def attacked(name: str, text: str, rate: float | None = None, seed: int = 0) -> str:
    return attack_texts(name, [text], rate=rate, seed=seed)[0][0]


# --- each attack on hand-computed examples, and its rate ------------------------------------------------------


def test_homoglyph_replaces_letters_by_cyrillic_or_greek_look_alikes():
    text = "The ocean: fkmnt 42!"
    result = attacked("homoglyph", text)  # RAID's rate, 1.0: every letter that has a look-alike
    look_alikes = {
        "T": {"\u0422", "\u03a4"},  # Cyrillic Т, Greek Τ
        "h": {"\u04bb"},  # Cyrillic һ
        "e": {"\u0435", "\u04bd"},  # Cyrillic е, ҽ
        "o": {"\u043e", "\u03bf", "\u03c3"},  # Cyrillic о, Greek ο, σ
        "c": {"\u0441"},  # Cyrillic с
        "a": {"\u0430", "\u03b1"},  # Cyrillic а, Greek α
    }
    assert len(result) == len(text)
    for original, new in zip(text, result):
        if original in look_alikes:
            assert new in look_alikes[original], (original, new)
        else:  # n, f, k, m, t, digits and punctuation have no look-alike of the same case
            assert new == original


def test_homoglyph_rate():
    text = "aceopxy" * 200  # every letter has a Cyrillic look-alike (а с е о р х у)
    result = attacked("homoglyph", text, rate=0.3)
    assert sum(a != b for a, b in zip(text, result)) == 420  # 0.3 x 1400


def test_zero_width_space_follows_every_character_at_rate_one():
    assert attacked("zero_width_space", "abc") == f"a{ZWSP}b{ZWSP}c{ZWSP}"
    result = attacked("zero_width_space", "x" * 1000, rate=0.5)
    assert result.count(ZWSP) == 500 and result.replace(ZWSP, "") == "x" * 1000


def test_whitespace_doubles_spaces():
    assert attacked("whitespace", "a b c d", rate=1.0) == "a  b  c  d"
    text = " ".join(["word"] * 1001)  # 1000 spaces
    assert attacked("whitespace", text).count("  ") == 200  # RAID's rate, 0.2
    assert attacked("whitespace", text).replace("  ", " ") == text


def test_upper_lower_flips_the_first_letter_of_words():
    assert attacked("upper_lower", "hello World, ok", rate=1.0) == "Hello world, Ok"
    text = " ".join(["word"] * 2000)
    result = attacked("upper_lower", text)  # RAID's rate, 0.05
    assert result.count("Word") == 100 and result.lower() == text


def test_misspelling_swaps_two_neighbouring_letters_after_the_first():
    # The pairs after `r` that differ: ec, ce, ei, iv, ve.
    assert attacked("misspelling", "receive", rate=1.0) in {"rceeive", "reecive", "recieve", "recevie", "receiev"}
    assert attacked("misspelling", "aaa a bb", rate=1.0) == "aaa a bb"  # nothing to swap
    # As RAID's, the rate is of all words: 0.2 x 1000 words = 200 of the 500 that can be misspelt.
    text = " ".join(["word", "aaa"] * 500)
    result = attacked("misspelling", text).split()
    assert sum(word not in ("word", "aaa") for word in result) == 200
    assert set(result) <= {"word", "aaa", "wrod", "wodr"}


def test_article_deletion():
    text = "The cat saw a dog and an owl in the tree."
    assert attacked("article_deletion", text, rate=1.0) == "The cat saw dog and owl in tree."  # not `The`
    long_text = "x " + " ".join(["the", "cat"] * 100)
    assert attacked("article_deletion", long_text).count("the") == 50  # RAID's rate, 0.5


def test_insert_paragraphs_between_sentences():
    text = 'One. Two! Three?  "Four." Five at 3.5 m.'
    assert attacked("insert_paragraphs", text, rate=1.0) == 'One.\n\nTwo!\n\nThree?\n\n"Four."\n\nFive at 3.5 m.'

    text = " ".join(["It rains."] * 101)
    assert attacked("insert_paragraphs", text).count("\n\n") == 50  # RAID's rate, 0.5 of 100 gaps


def test_number_changes_every_digit_of_a_chosen_number():
    result = attacked("number", "in 2023, 4.5% of 7", rate=1.0)
    assert len(result) == len("in 2023, 4.5% of 7")
    for original, new in zip("in 2023, 4.5% of 7", result):
        assert (new != original) if original.isdigit() else (new == original)
    numbers = " ".join(["1234"] * 100)
    assert attacked("number", numbers).split().count("1234") == 50  # RAID's rate, 0.5


def test_alternative_spelling_makes_american_spellings_british_in_the_same_case():
    text = "The color of the Organization; HONOR, analyze."
    assert attacked("alternative_spelling", text) == "The colour of the Organisation; HONOUR, analyse."
    assert attacked("alternative_spelling", " ".join(["color"] * 10), rate=0.5).count("colour") == 5


def test_short_texts_are_attacked_at_the_rate_on_average():
    # 0.05 x 10 words: RAID rounds down and never flips one; here half of the texts get one flip.
    texts = [f"text {i} has ten words in it, all of them short." for i in range(1000)]
    flips = sum(text != new for text, new in zip(texts, attack_texts("upper_lower", texts)[0]))
    assert 420 < flips < 580


def test_unchanged_counts_the_texts_an_attack_cannot_change():
    texts = ["no digits here", "in 2023", "", "42"]
    assert attack_texts("number", texts)[1] == 2
    assert attack_texts("article_deletion", ["I saw the cat.", "Cats sleep."])[1] == 1
    assert attack_texts("homoglyph", ["Кёнигсберг", "ok", "123"])[1] == 2  # no ASCII letter to replace


def test_attacks_are_deterministic_per_seed_and_document():
    texts = ["The first text is about the sea and a boat.", "A second one talks of 12 ships at sea."]
    for name in ATTACK_RATES.keys() - {"synonym", "paraphrase"}:
        once = attack_texts(name, texts, rate=0.5, seed=3)[0]
        assert once == attack_texts(name, texts, rate=0.5, seed=3)[0], name
        assert once[::-1] == attack_texts(name, texts[::-1], rate=0.5, seed=3)[0], name  # order does not matter
        assert once[1] == attack_texts(name, texts[1:], rate=0.5, seed=3)[0][0], name  # nor the other documents
    long_text = " ".join(["the sea and a boat"] * 50)
    assert attacked("homoglyph", long_text, 0.5, seed=3) != attacked("homoglyph", long_text, 0.5, seed=4)
    by_key = attack_texts("homoglyph", [long_text, long_text], rate=0.5, keys=["a", "b"])[0]
    assert by_key[0] != by_key[1]  # the same text under two ids is attacked as two documents


def test_unknown_attack_name_says_did_you_mean():
    with pytest.raises(ValueError, match="unknown attack 'homoglyf': did you mean homoglyph"):
        check_attack("homoglyf")
    with pytest.raises(ValueError, match="unknown attack 'zzz': \\(attacks: homoglyph, "):
        attack_texts("zzz", ["text"])


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan])
def test_rate_outside_zero_to_one_is_rejected(rate):
    with pytest.raises(ValueError, match="rate of attack whitespace must be between 0 and 1"):
        attack_texts("whitespace", ["a b"], rate=rate)


def test_raid_rates_by_default():
    assert check_attack("upper_lower") == 0.05 and check_attack("upper_lower", 0.3) == 0.3
    assert attacked("whitespace", "a b", rate=0.0) == "a b"


# --- the model attacks, on tiny random models -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fill_mask_dir(tiny_model_dir, tmp_path_factory):
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    directory = tmp_path_factory.mktemp("fill_mask")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(directory)
    BertForMaskedLM(AutoConfig.from_pretrained(tiny_model_dir)).save_pretrained(directory)
    return str(directory)


def test_synonym_replaces_content_words_only(fill_mask_dir, one_torch_thread):
    text = "The detector reads every sentence of the report, and the writer changes many words."
    result, unchanged = attack_texts("synonym", [text, "a of the"], rate=1.0, model=fill_mask_dir)
    assert unchanged == 1  # only stop words
    original, new = text.split(), result[0].split()
    assert len(new) == len(original)
    changed = [(a, b) for a, b in zip(original, new) if a != b]
    assert changed and all(a.lower().strip(",.") not in ("the", "of", "and", "every", "many") for a, _ in changed)
    assert all(b.strip(",.").isalpha() for _, b in changed)
    assert result == attack_texts("synonym", [text, "a of the"], rate=1.0, model=fill_mask_dir)[0]


def test_model_attacks_need_a_loadable_model(tmp_path):
    with pytest.raises(ValueError, match="attack synonym needs a model"):
        attack_texts("synonym", ["text"])
    with pytest.raises(ValueError, match="cannot load the seq2seq model .* of attack paraphrase"):
        attack_texts("paraphrase", ["text"], model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="paraphrase prompt must contain {text}"):
        attack_texts("paraphrase", ["text"], model=str(tmp_path / "missing"), prompt="paraphrase: ")


def test_paraphrase_rewrites_windows_of_three_sentences(tiny_model_dir, tmp_path, one_torch_thread):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)  # fmt: skip
    tokenizer.save_pretrained(tmp_path)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    sentences = ["One sea.", "Two boats.", "Three ships.", "Four waves.", "Five gulls.", "Six fish."]
    result = attack_texts("paraphrase", [" ".join(sentences)], rate=0.5, model=str(tmp_path))[0][0]
    # One of the two windows is rewritten (by a random model: any words), the other kept as it was.
    first, second = " ".join(sentences[:3]), " ".join(sentences[3:])
    assert (result.startswith(first + " ") and not result.endswith(second)) or (
        result.endswith(" " + second) and not result.startswith(first)
    )
    assert result == attack_texts("paraphrase", [" ".join(sentences)], rate=0.5, model=str(tmp_path))[0][0]


# --- canonicalisation -----------------------------------------------------------------------------------------


def test_canonicalize_by_hand():
    assert canonicalize("\u0420aris is \u0441lose") == "Paris is close"  # Cyrillic Р, с
    assert canonicalize("a\u200bb\u200cc\u200dd\u2060e\ufefff\u00adg") == "abcdefg"
    assert canonicalize("\ufb01ne \uff45") == "fine e"  # NFKC: ligature, full-width letter
    assert canonicalize("\u0406t is \u0399") == "It is I"  # Cyrillic and Greek capital I
    assert canonicalize("Москва и \u0420aris") == "Москва и Paris"  # mixed word mapped, Russian kept
    assert canonicalize("а у нас") == "а у нас"  # Russian: `а`, `у` are look-alikes, but not in Latin words
    assert canonicalize("Brγ lines and γ rays") == "Bry lines and y rays"  # Latin-Greek words look attacked
    assert canonicalize("γ rays") == "γ rays"
    assert canonicalize("Müller, Straße, naïve") == "Müller, Straße, naïve"
    # Other scripts in the text: a word of look-alikes only is mapped unless a word of its own script is beside it.
    assert (
        canonicalize("Duke \u041duan of Qi (齐桓公) \u051d\u03b1\u0455 \u0430 ruler")
        == "Duke Huan of Qi (齐桓公) was a ruler"
    )
    assert canonicalize("He wrote «Москва его» and \u0420aris") == "He wrote «Москва его» and Paris"


def test_canonicalize_undoes_homoglyphs_in_texts_with_other_scripts(shared_data):
    texts = [text for text in sample_texts(shared_data, "arxiv", "wikipedia", "reddit", "wikihow")]
    texts = [canonicalize(text) for text in texts if not text.isascii()]
    assert len(texts) > 150
    restored = [canonicalize(result) == text for result, text in zip(attack_texts("homoglyph", texts)[0], texts)]
    # Left: look-alikes inside a formula's run of Greek letters (`ΔV`, `λI`), and a real `α` mapped in an attacked text.
    assert sum(restored) >= len(texts) - 5


def sample_texts(shared_data, *files: str) -> list[str]:
    texts = []
    for name in files:
        for line in (shared_data / "m4_sample" / f"{name}_llama2.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row["human_text"], row["machine_text"]]
    return texts


ENGLISH_TEXT = (
    "A detector of machine-written text reads the whole document. Its score is compared with a threshold, "
    "chosen on human texts so that few of them are flagged. Cheap edits can move the score a lot."
)


@pytest.mark.parametrize("name", ["homoglyph", "zero_width_space"])
def test_canonicalize_undoes_character_attacks_on_ascii_texts(name):
    for rate in (1.0, 0.5, 0.1):
        result = attacked(name, ENGLISH_TEXT, rate=rate)
        assert result != ENGLISH_TEXT and canonicalize(result) == ENGLISH_TEXT


@pytest.mark.parametrize("name", ["homoglyph", "zero_width_space"])
def test_canonicalize_undoes_character_attacks_on_the_shared_sample(shared_data, name):
    texts = [text for text in sample_texts(shared_data, "arxiv", "wikipedia", "reddit") if text.isascii()]
    assert len(texts) > 300
    results = attack_texts(name, texts)[0]
    assert [canonicalize(result) for result in results] == texts


def nfkc_without_format_characters(text: str) -> str:
    return unicodedata.normalize("NFKC", "".join(char for char in text if unicodedata.category(char) != "Cf"))


def mostly_latin(text: str) -> bool:
    letters = [unicodedata.name(char, "").split()[0] for char in text if char.isalpha()]
    return letters.count("LATIN") > len(letters) / 2


def test_real_cyrillic_kazakh_and_german_texts_keep_their_letters(shared_data):
    for text in sample_texts(shared_data, "germanwikipedia"):  # one quotes a Russian `его` made of look-alikes
        assert canonicalize(text) == nfkc_without_format_characters(text)
    look_alike_words = 0
    for text in sample_texts(shared_data, "russian", "qazh"):
        expected = nfkc_without_format_characters(text)
        if not mostly_latin(expected):  # a transliterated text or a Latin formula may have a mixed word mapped
            assert canonicalize(text) == expected
            look_alike_words += any(word in ("а", "с", "о", "у", "В", "С", "О") for word in expected.split())
    assert look_alike_words > 50  # the sample does test words made only of look-alike letters
