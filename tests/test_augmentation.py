"""Attack-augmented training (--augment_attacks, m4_training/augmentation.py): attacked copies of training
documents, on the training side of the split only, counted in data_report.json and marked in splits.jsonl."""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl, write_jsonl

import train
from data_loaders import Corpus, Document, TextNormalization
from m4_training import data_cache, reports
from m4_training.augmentation import AttackedCopy, augment_training
from m4_training.cli import EXIT_USAGE
from m4_training.splits import Split
from m4_training.train_args import parse_train_args

WORDS = "apple birch cedar delta ember fjord grove heron inlet jade kelp lotus maple nectar olive pearl".split()
# alternative_spelling at RAID's rate 1.0 makes every American spelling British: the human texts say `color`,
# the machine texts have no American spelling (it cannot change them).
AMERICAN, BRITISH = "color", "colour"
RAW = TextNormalization(digits=False, unicode=False)


def human_text(word: str, spelling: str = AMERICAN) -> str:
    return f"Notes on {word}: the {spelling} of the {word} sky changes."


@pytest.fixture
def corpus_dir(tmp_path):
    rows = [{"human_text": human_text(w), "machine_text": f"Machine prose {w} describing skies over {w} hills."}
            for w in WORDS]  # fmt: skip
    # The British twin of the first human text: an attacked copy of that text would be this document.
    rows.append({"human_text": human_text(WORDS[0], BRITISH), "machine_text": "Machine prose on twin hills."})
    write_jsonl(tmp_path / "m4" / "arxiv_chatGPT.jsonl", rows)
    return tmp_path / "m4"


def arguments(corpus_dir, tiny_model_dir, output_dir, *extra: str) -> list[str]:
    return [
        "--data_dir", str(corpus_dir), "--reddit_file", "none", "--model", str(tiny_model_dir),
        "--train_domains", "arxiv", "--train_generators", "chatGPT", "--stratified_split",
        "--validation_split", "0.25", "--max_length", "32", "--chunk_overlap", "4", "--no_cache",
        "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip


def prepare(corpus_dir, tiny_model_dir, tokenizer, output_dir, *extra: str) -> train.PreparedData:
    """The data stage of train.py (data_report.json and splits.jsonl written to `output_dir`)."""
    config = parse_train_args(arguments(corpus_dir, tiny_model_dir, output_dir, *extra))
    return train.prepare_data(config, tokenizer)


def copies_of(documents) -> list[AttackedCopy]:
    return [doc for doc in documents if isinstance(doc, AttackedCopy)]


def test_rate_one_gives_every_changed_training_document_one_copy(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path):
    flags = ("--augment_attacks", "alternative_spelling", "--augment_rate", "1")
    data = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / "out", *flags)
    split = data.prepared.split
    originals = [doc for doc in split.train if not isinstance(doc, AttackedCopy)]
    copies = copies_of(split.train)
    all_texts = {doc.text for doc in data.prepared.corpus.documents}
    # By hand: `color` -> `colour`; a text without `color` is unchanged; one whose British form is loaded is a
    # duplicate (the first human text, whose twin is a document of its own).
    changed = {doc.doc_id: doc.text.replace(AMERICAN, BRITISH) for doc in originals if AMERICAN in doc.text}
    duplicates = {doc_id for doc_id, text in changed.items() if text in all_texts}
    assert len(duplicates) == 1  # the data: the first human text and its British twin are both training documents
    expected = {doc_id: text for doc_id, text in changed.items() if doc_id not in duplicates}
    assert {copy.augmented_from: copy.text for copy in copies} == expected
    assert len(copies) == len({copy.augmented_from for copy in copies})  # one copy per document
    assert {copy.attack for copy in copies} == {"alternative_spelling"}
    assert split.train[: len(originals)] == originals  # the originals first, as without augmentation
    ids = [doc.doc_id for doc in data.prepared.corpus.documents] + [copy.doc_id for copy in copies]
    assert len(ids) == len(set(ids))  # new doc_ids

    # data_report.json, the terminal summary and splits.jsonl
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    unchanged = len(originals) - len(changed)
    assert unchanged == sum(doc.label == 1 for doc in originals) + 1  # the machine texts and the British twin
    assert report["augmentation"] == {
        "attacks": ["alternative_spelling"],
        "rate": 1.0,
        "copies": {"alternative_spelling": len(expected)},
        "unchanged": {"alternative_spelling": unchanged},
        "duplicates": {"alternative_spelling": 1},
        "train_documents_before": len(originals),
        "train_documents_after": len(originals) + len(expected),
    }
    assert sum(report["documents"]["train"].values()) == len(originals) + len(expected)
    assert (
        f"alternative_spelling {len(expected)} copies, {unchanged} unchanged, 1 duplicates"
        in reports.format_data_summary(report)
    )
    settings = parse_train_args(arguments(corpus_dir, tiny_model_dir, tmp_path / "out", *flags)).as_dict()
    card = reports.training_data_lines(report, settings)[0]  # the model card's and the page's "Training data"
    assert card.endswith(
        " Training documents include attacked copies (alternative_spelling, rate 1), in their source's group."
    )
    rows = read_jsonl(tmp_path / "out" / "splits.jsonl")
    marked = {row["doc_id"]: (row["split"], row["augmented_from"], row["attack"]) for row in rows if "attack" in row}
    assert marked == {copy.doc_id: ("train", copy.augmented_from, "alternative_spelling") for copy in copies}


def test_a_copy_equal_to_a_validation_text_is_not_added(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path):
    # The British twin of a training text in a domain held out for validation.
    twin = human_text(WORDS[1], BRITISH)
    write_jsonl(corpus_dir / "wikipedia_chatGPT.jsonl", [{"human_text": twin, "machine_text": "Machine text."}])
    flags = ("--stratified_split", "false", "--val_domain", "wikipedia")
    flags += ("--augment_attacks", "alternative_spelling", "--augment_rate", "1")
    split = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / "out", *flags).prepared.split
    assert twin in {doc.text for doc in split.val} and human_text(WORDS[1]) in {doc.text for doc in split.train}
    assert twin not in {copy.text for copy in copies_of(split.train)}
    assert split.augmentation["duplicates"] == {"alternative_spelling": 2}  # and the first text's twin in training


def test_rate_zero_adds_nothing(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path):
    plain = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / "plain").prepared.split
    flags = ("--augment_attacks", "homoglyph", "misspelling", "--augment_rate", "0")
    split = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / "zero", *flags).prepared.split
    assert split.train == plain.train and split.val == plain.val
    assert split.augmentation["copies"] == {"homoglyph": 0, "misspelling": 0}
    assert "augmentation" not in json.loads((tmp_path / "plain" / "data_report.json").read_text())


def test_copies_stay_on_the_training_side_with_their_sources_labels(
    corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path
):
    flags = ("--augment_attacks", "misspelling", "upper_lower", "alternative_spelling", "--augment_rate", "1")
    data = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / "out", *flags)
    split = data.prepared.split
    copies = copies_of(split.train)
    assert len(copies) > 10
    assert not copies_of(split.val)
    sources = {doc.doc_id: doc for doc in split.train}
    val_texts, val_groups = {doc.text for doc in split.val}, {doc.group_id for doc in split.val}
    for copy in copies:
        source = sources[copy.augmented_from]  # a training document
        assert not isinstance(source, AttackedCopy)
        assert copy.text not in val_texts and copy.group_id not in val_groups
        assert (copy.label, copy.domain, copy.generator, copy.group_id, copy.sources) == (
            source.label, source.domain, source.generator, source.group_id, source.sources
        )  # fmt: skip
    assert data.report["group_overlap"] == 0
    # The chunks of a copy are training chunks, with its label.
    chunk_labels = dict(zip(data.train_chunks["doc_id"], data.train_chunks["labels"]))
    assert {copy.doc_id: copy.label for copy in copies} == {copy.doc_id: chunk_labels[copy.doc_id] for copy in copies}
    assert not {copy.doc_id for copy in copies} & set(data.val_chunks["doc_id"])


def test_the_same_seed_gives_the_same_copies(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path):
    def copies(seed: str, output: str) -> list[tuple]:
        flags = ("--augment_attacks", "article_deletion", "misspelling", "--augment_rate", "0.5", "--seed", seed)
        split = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / output, *flags).prepared.split
        return [(c.doc_id, c.text, c.augmented_from, c.attack) for c in copies_of(split.train)]

    first = copies("3", "a")
    assert first == copies("3", "b")
    assert 0 < len(first) < 30 and {attack for *_, attack in first} == {"article_deletion", "misspelling"}
    assert copies("4", "c") != first


def test_the_share_copied_is_the_rate_and_a_documents_copy_does_not_depend_on_the_others():
    documents = [Document(i, f"text number {i}", i % 2, "arxiv", "chatgpt", [], i) for i in range(2000)]

    def augmented(train: list[Document]) -> dict[str, tuple[str, str]]:
        split = Split(train=list(train), val=[])
        augment_training(split, Corpus(documents, []), ["zero_width_space", "homoglyph"], 0.3, 5, RAW)
        return {documents[c.augmented_from].text: (c.text, c.attack) for c in copies_of(split.train)}

    every = augmented(documents)
    # zero_width_space and homoglyph change every text here: copies ~ Binomial(2000, 0.3), mean 600, sd 20.5.
    assert 540 < len(every) < 660
    assert 0.4 < sum(attack == "homoglyph" for _, attack in every.values()) / len(every) < 0.6
    half = augmented(documents[1000:])
    assert half == {text: copy for text, copy in every.items() if text in {d.text for d in documents[1000:]}}


def test_canonicalisation_undoes_homoglyph_copies(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path):
    flags = ("--augment_attacks", "homoglyph", "--augment_rate", "1")
    canonical = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / "a", *flags).prepared.split
    n_train = canonical.augmentation["train_documents_before"]
    assert canonical.augmentation["copies"] == {"homoglyph": 0}  # --text_normalization (default) maps them back
    assert canonical.augmentation["unchanged"] == {"homoglyph": n_train} and len(canonical.train) == n_train
    flags += ("--text_normalization", "false")
    raw = prepare(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path / "b", *flags).prepared.split
    assert raw.augmentation["copies"] == {"homoglyph": n_train}  # every text here has a letter with a look-alike


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--augment_attacks", "homoglyf"], "--augment_attacks: unknown attack 'homoglyf': did you mean homoglyph?"),
        (["--augment_attacks", "homoglyph", "synonym"], "--augment_attacks synonym: augmentation with model attacks"),
        (["--augment_attacks", "paraphrase"], "not supported yet (they would need a GPU pass over the corpus)"),
        (["--augment_rate", "1.5"], "--augment_rate must be in [0, 1], got 1.5"),
        (["--augment_rate", "-0.1"], "--augment_rate must be in [0, 1], got -0.1"),
        (["--augment_rate", "nan"], "--augment_rate must be in [0, 1], got nan"),
    ],
)
def test_bad_augmentation_flags_are_one_line_before_any_work(flags, message, tmp_path, capsys):
    output_dir = tmp_path / "out"
    # The data directory does not exist: an error about it would mean the flags were checked too late.
    code = train.main(["--data_dir", str(tmp_path / "missing"), "--output_dir", str(output_dir), *flags])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EXIT_USAGE
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not output_dir.exists()


def test_a_changed_rate_is_a_new_cache_entry(corpus_dir, tiny_model_dir, tiny_tokenizer, tmp_path):
    def settings(rate: str) -> data_cache.DataSettings:
        argv = arguments(corpus_dir, tiny_model_dir, tmp_path / "out", "--augment_attacks", "misspelling")
        argv += ["--augment_rate", rate, "--cache_dir", str(tmp_path / "cache")]
        argv.remove("--no_cache")
        return train.data_settings(parse_train_args(argv))

    none = data_cache.prepare(settings("0"), tiny_tokenizer)
    assert not copies_of(none.split.train)
    every = data_cache.prepare(settings("1"), tiny_tokenizer)  # not the entry of rate 0
    assert len(copies_of(every.split.train)) == len(none.split.train)
    assert len(every.train_chunks) > len(none.train_chunks)
    again = data_cache.prepare(settings("1"), tiny_tokenizer)  # read from the cache
    assert [doc.text for doc in again.split.train] == [doc.text for doc in every.split.train]
    assert len(list((tmp_path / "cache").iterdir())) == 2
