"""Second field test, data stage: outputs that overlap, reruns, messages, sampling by source and label, the Reddit
file's domain, and each split flow's leak guard checked against the raw rows (not against the code's group ids)."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pandas as pd
import pytest
from conftest import read_jsonl, tiny_train_args, write_jsonl

import data_loaders as dl
import prepare_data
import train
from m4_training import heldout, splits
from m4_training.cli import UserError, counted

LONG = "This sentence is long enough to pass the minimum length after cleaning."


def m4_rows(n: int, tag: str) -> list[dict]:
    return [{"human_text": f"{LONG} human {tag} {i}", "machine_text": f"{LONG} machine {tag} {i}"} for i in range(n)]


# ----------------------------------------------------------------------------------------------- prepare_data.py


def test_prepare_m4_refuses_a_report_among_its_own_outputs_before_writing(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_jsonl(raw / "arxiv_llama2.jsonl", m4_rows(3, "a"))
    assert prepare_data.main(["m4", "--input_dir", str(raw), "--output_dir", str(out)]) == 0
    cleaned = (out / "arxiv_llama2.jsonl").read_bytes()
    capsys.readouterr()
    for report in (out / "arxiv_llama2.jsonl", out / "sub" / "table.json", tmp_path, out):
        code = prepare_data.main(["m4", "--input_dir", str(raw), "--output_dir", str(out), "--report", str(report)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert (out / "arxiv_llama2.jsonl").read_bytes() == cleaned  # nothing written
    assert "overlap: the output directory is replaced as a whole" in err or "same path" in err
    assert sorted(p.name for p in out.iterdir()) == ["arxiv_llama2.jsonl", "prepare_report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def test_prepare_m4_run_twice_with_its_report_elsewhere_is_accepted(tmp_path, capsys):
    raw, out, table = tmp_path / "raw", tmp_path / "out", tmp_path / "table.json"
    write_jsonl(raw / "arxiv_llama2.jsonl", m4_rows(3, "a") + [{"human_text": "short", "machine_text": LONG}])
    argv = ["m4", "--input_dir", str(raw), "--output_dir", str(out), "--report", str(table)]
    assert prepare_data.main(argv) == 0
    assert prepare_data.main(argv) == 0, capsys.readouterr().err
    expected = [{"path": str(raw / "arxiv_llama2.jsonl"), "rows": 4, "kept": 3, "dropped": {"human_text_too_short": 1}}]
    assert json.loads(table.read_text())["files"] == expected
    assert table.read_bytes() == (out / "prepare_report.json").read_bytes()
    # A directory this command did not write is still refused.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    capsys.readouterr()
    argv = ["m4", "--input_dir", str(raw), "--output_dir", str(tmp_path / "mine"), "--report", str(table)]
    assert prepare_data.main(argv) == 2
    assert "holds files that prepare_data.py m4 did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_prepare_reddit_says_which_input_holds_no_posts(tmp_path, capsys):
    empty = tmp_path / "dump.jsonl"
    empty.write_text("\n")
    assert prepare_data.main(["reddit", "--input", str(empty), "--output", str(tmp_path / "posts.jsonl")]) == 2
    assert f"error: {empty}: holds no posts (no rows); nothing to prepare" in capsys.readouterr().err
    write_jsonl(tmp_path / "m4" / "arxiv_chatgpt.jsonl", m4_rows(2, "a"))
    with pytest.raises(UserError) as error:  # train.py's --reddit_file says the same
        dl.load_corpus(tmp_path / "m4", ["arxiv"], ["chatgpt"], empty, dl.TextNormalization(False, False))
    assert str(error.value) == f"{empty}: holds no posts (no rows); fix the file or pass --reddit_file none"
    deleted = write_jsonl(tmp_path / "deleted.jsonl", [{"body": "[deleted]", "created_utc": 1, "id": "a"}])
    assert prepare_data.main(["reddit", "--input", str(deleted), "--output", str(tmp_path / "posts.jsonl")]) == 2
    assert f"no post of {deleted} passed the filters: {{'text_deleted': 1}}" in capsys.readouterr().err
    assert not (tmp_path / "posts.jsonl").exists()


# ----------------------------------------------------------------------------------------------- messages


def test_a_test_data_directory_without_m4_files_lists_the_files_there(tmp_path):
    write_jsonl(tmp_path / "tests" / "notes.jsonl", [{"text": "a labelled text", "label": 0}])
    with pytest.raises(UserError) as error:
        heldout.read_test_sets([str(tmp_path / "tests")], None, None, dl.TextNormalization(True, True))
    assert str(error.value) == (
        f"--test_data {tmp_path / 'tests'}: no <domain>_<generator>.jsonl file is there (files there: notes.jsonl)"
    )
    write_jsonl(tmp_path / "both" / "arxiv_chatgpt.jsonl", m4_rows(2, "a"))
    write_jsonl(tmp_path / "both" / "wikihow_davinci.jsonl", m4_rows(2, "w"))
    with pytest.raises(UserError, match=r"matches --test_domains/--test_generators \(files there: arxiv_chatgpt"):
        heldout.read_test_sets([str(tmp_path / "both")], ["arxiv"], ["davinci"], dl.TextNormalization(True, True))
    with pytest.raises(UserError, match=r"no <domain>_<generator>.jsonl files in .* \(files there: notes.jsonl\)"):
        dl.find_m4_files(tmp_path / "tests", ["arxiv"], ["chatgpt"])


def test_counts_in_messages_agree_with_their_nouns():
    assert [counted(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]
    assert [counted(n, "entry", "entries") for n in (1, 3)] == ["1 entry", "3 entries"]
    with pytest.raises(UserError) as error:
        dl.read_objects([{"note": "no text field"}], "request", dl.TextNormalization(True, True))
    assert str(error.value) == "request: no usable document in 1 row (skipped: {'text_missing': 1})"


def test_names_matching_no_file_say_the_names_there_and_the_flag_that_reads_them(tmp_path):
    for domain in ("arxiv", "wikihow"):
        write_jsonl(tmp_path / f"{domain}_llama2.jsonl", m4_rows(2, domain))
    laptop = ["chatGPT", "davinci", "cohere", "dolly", "flant5"]  # example_commands.sh laptop, on llama2 files
    with pytest.raises(UserError) as error:
        dl.find_m4_files(tmp_path, dl.DEFAULT_DOMAINS, laptop, must_match=[])  # the default lists
    assert str(error.value).endswith(
        "files there: arxiv_llama2.jsonl, wikihow_llama2.jsonl (give --train_generators llama2)"
    )
    with pytest.raises(UserError) as error:
        dl.find_m4_files(tmp_path, ["arxiv"], laptop)  # named on the command line
    assert str(error.value) == (
        f"{tmp_path}: --train_generators chatGPT davinci cohere dolly flant5 match no file; generators there: "
        "llama2 (give --train_generators llama2)"
    )
    with pytest.raises(UserError) as error:
        dl.find_m4_files(tmp_path, ["arxiv", "wikihw"], ["llama2"])
    assert str(error.value) == (
        f"{tmp_path}: --train_domains wikihw matches no file (did you mean wikihow?); domains there: arxiv wikihow "
        "(give --train_domains arxiv wikihow)"
    )
    one = [dl.RequestedNames("--val_domain", "domains", ["reddit_wsb"], single=True)]
    with pytest.raises(UserError, match=r"\(give --val_domain arxiv or wikihow\)$"):
        dl.find_m4_files(tmp_path, ["arxiv"], ["llama2"], must_match=one)
    # The flags the messages give are accepted.
    found = dl.find_m4_files(tmp_path, dl.DEFAULT_DOMAINS, ["llama2"], must_match=[])
    assert [path.name for path, _, _ in found] == ["arxiv_llama2.jsonl", "wikihow_llama2.jsonl"]
    assert len(dl.find_m4_files(tmp_path, ["arxiv", "wikihow"], ["llama2"])) == 2


def test_val_domain_error_offers_only_domains_it_accepts(tmp_path):
    corpus, _ = leaky_corpus(tmp_path)  # M4 arxiv and wikihow, and Reddit posts of source reddit_wsb
    with pytest.raises(UserError) as error:
        splits.domain_holdout_split(corpus, "peerread", 0.1, seed=0)
    offered = str(error.value).split("M4 domains found: ")[1].split(", ")
    assert offered == ["arxiv", "wikihow"]
    for domain in offered:
        assert any(doc.domain == domain for doc in splits.domain_holdout_split(corpus, domain, 0.1, seed=0).val)


# ----------------------------------------------------------------------------------------------- the Reddit file


def test_a_reddit_posts_domain_is_its_source_else_reddit_posts_everywhere(tmp_path, caplog):
    write_jsonl(tmp_path / "m4" / "arxiv_chatgpt.jsonl", m4_rows(2, "a"))

    def reddit_report(rows: list[dict]) -> tuple[dl.FileReport, set[str]]:
        path = write_jsonl(tmp_path / "posts.jsonl", rows)
        corpus = dl.load_corpus(tmp_path / "m4", ["arxiv"], ["chatgpt"], path, dl.TextNormalization(False, False))
        return corpus.files[-1], {doc.domain for doc in corpus.documents if not corpus.from_m4(doc)}

    assert reddit_report([{"text": "a post", "source": "reddit_wsb"}])[0].domain == "reddit_wsb"
    report, domains = reddit_report([{"text": "a post"}, {"text": "another post"}])
    assert report.domain == "reddit_posts" and domains == {"reddit_posts"}
    report, domains = reddit_report([{"text": "a post", "source": "wsb"}, {"text": "another post"}])
    assert report.domain == "reddit_posts, wsb" and domains == {"reddit_posts", "wsb"}
    with caplog.at_level(logging.WARNING):
        report, domains = reddit_report([{"text": "a post", "source": "arxiv"}])
    assert domains == {"arxiv"} and "posts whose source is arxiv join that M4 domain" in caplog.text
    # prepare_data.py reddit writes the same default, and train.py reads it back as that domain.
    dump = write_jsonl(tmp_path / "dump.jsonl", [{"body": LONG, "created_utc": 1600000000, "id": "x"}])
    assert prepare_data.main(["reddit", "--input", str(dump), "--output", str(tmp_path / "prepared.jsonl")]) == 0
    (row,) = read_jsonl(tmp_path / "prepared.jsonl")
    assert row["source"] == "reddit_posts"
    assert reddit_report([row])[0].domain == "reddit_posts"


# ----------------------------------------------------------------------------------------------- sampling


def side_of(cells: dict[tuple[str, int], int]) -> list[dl.Document]:
    documents = []
    for (domain, label), count in cells.items():
        for _ in range(count):
            n = len(documents)
            documents.append(dl.Document(n, f"{domain} {label} {n}", label, domain, "g", [], group_id=n))
    return documents


def test_sampling_shares_the_budget_evenly_by_label_then_by_source():
    documents = side_of({("arxiv", 0): 30, ("arxiv", 1): 30, ("wikihow", 0): 30, ("wikihow", 1): 30, ("wsb", 0): 300})
    split = splits.Split(train=list(documents), val=[])
    splits.sample_side(split, "train", 100, seed=0)
    kept = Counter((doc.domain, doc.label) for doc in split.train)
    # 50 machine: 25 per domain; 50 human over three sources: 16, 17, 17 (drawn uniformly, wsb would get ~83).
    assert kept[("arxiv", 1)] == kept[("wikihow", 1)] == 25
    assert sorted(kept[(domain, 0)] for domain in ("arxiv", "wikihow", "wsb")) == [16, 17, 17]
    assert split.sampling["train"] == {
        "max_documents": 100,
        "available": {
            "arxiv": {"human": 30, "machine": 30},
            "wikihow": {"human": 30, "machine": 30},
            "wsb": {"human": 300, "machine": 0},
        },
        "kept": {
            domain: {"human": kept[(domain, 0)], "machine": kept[(domain, 1)]} for domain in ("arxiv", "wikihow", "wsb")
        },
    }
    assert split.dropped == {"over_max_train_samples": 320}
    dropped = [doc.doc_id for reason, doc in split.dropped_documents if reason == "over_max_train_samples"]
    assert sorted(dropped + [doc.doc_id for doc in split.train]) == list(range(420))
    assert [doc.doc_id for doc in split.train] == sorted(doc.doc_id for doc in split.train)  # corpus order kept


def test_sampling_gives_what_a_cell_lacks_to_the_others_and_is_seeded():
    documents = side_of({("arxiv", 0): 100, ("arxiv", 1): 10})
    split = splits.Split(train=[], val=list(documents))
    splits.sample_side(split, "val", 50, seed=3)
    assert Counter(doc.label for doc in split.val) == {0: 40, 1: 10} and split.dropped == {"over_max_val_samples": 60}

    def drawn(seed: int) -> list[int]:
        split = splits.Split(train=list(documents), val=[])
        splits.sample_side(split, "train", 30, seed)
        return [doc.doc_id for doc in split.train]

    assert drawn(1) == drawn(1) != drawn(2)
    everything = splits.Split(train=list(documents), val=[])
    splits.sample_side(everything, "train", 500, seed=0)
    assert everything.train == documents and not everything.dropped
    assert everything.sampling["train"]["kept"] == everything.sampling["train"]["available"]


def test_a_sampled_dry_run_counts_every_loaded_document_once(demo_inputs, tmp_path):
    out = tmp_path / "run"
    assert train.main(tiny_train_args(demo_inputs, out, "--dry_run", "--stratified_split")) == 0  # 64 / 40
    report = json.loads((out / "data_report.json").read_text())
    placed, dropped = read_jsonl(out / "splits.jsonl"), read_jsonl(out / "dropped_documents.jsonl")
    not_conflicting = [row for row in dropped if row["reason"] != "conflicting_labels"]
    assert len(placed) + len(not_conflicting) == report["documents_loaded"]
    assert len({row["doc_id"] for row in placed + dropped}) == len(placed) + len(dropped)
    for side, size in (("train", 64), ("val", 40)):
        kept = Counter((row["domain"], row["label"]) for row in placed if row["split"] == side)
        left = Counter((row["domain"], row["label"]) for row in dropped if row["reason"] == f"over_max_{side}_samples")
        assert Counter(label for _, label in kept.elements()) == {0: size // 2, 1: size // 2}
        sampling = report["sampling"][side]
        for domain, counts in sampling["available"].items():
            for label, name in ((0, "human"), (1, "machine")):
                assert sampling["kept"][domain][name] == kept[(domain, label)]
                assert counts[name] == kept[(domain, label)] + left[(domain, label)]
    assert report["documents_dropped_by_split"] == dict(Counter(row["reason"] for row in not_conflicting))


# ----------------------------------------------------------------------------------------------- leak guards


def leaky_corpus(tmp_path):
    """Two domains of three generators with the traps a leak would fall into: one machine text in two rows of two
    generator files (so two human texts share a group) and one human text in both domains' files (a group across
    domains); and Reddit posts. Returns the corpus and the raw rows by (domain, generator)."""
    rows = {
        (domain, generator): [
            {"human_text": f"{domain} human {i}", "machine_text": f"{domain} {generator} machine {i}"}
            for i in range(40)
        ]
        for domain in ("arxiv", "wikihow")
        for generator in ("chatgpt", "davinci", "flant5")
    }
    rows["arxiv", "chatgpt"][0]["machine_text"] = rows["arxiv", "davinci"][1]["machine_text"]
    rows["wikihow", "flant5"][2]["human_text"] = rows["arxiv", "chatgpt"][3]["human_text"]
    for (domain, generator), file_rows in rows.items():
        write_jsonl(tmp_path / f"{domain}_{generator}.jsonl", file_rows)
    reddit = write_jsonl(tmp_path / "posts.jsonl", [{"text": f"post {i}", "source": "reddit_wsb"} for i in range(60)])
    corpus = dl.load_corpus(
        tmp_path, ["arxiv", "wikihow"], ["chatgpt", "davinci", "flant5"], reddit, dl.TextNormalization(False, False)
    )
    return corpus, rows


def sides(split: splits.Split) -> dict[str, str]:
    return {doc.text: "train" for doc in split.train} | {doc.text: "val" for doc in split.val}


def assert_each_row_on_one_side(rows: dict, split: splits.Split) -> None:
    """From the raw rows: a human text and the machine text made from it are never on two sides."""
    side = sides(split)
    assert not {doc.text for doc in split.train} & {doc.text for doc in split.val}
    for file_rows in rows.values():
        for row in file_rows:
            assert len({side.get(row["human_text"]), side.get(row["machine_text"])} - {None}) <= 1, row


@pytest.mark.parametrize("seed", range(4))
def test_stratified_split_never_parts_a_row_or_rows_sharing_a_text(tmp_path, seed):
    corpus, rows = leaky_corpus(tmp_path)
    split = splits.split_corpus(corpus, True, 0.3, "flant5", 0.1, seed=seed)
    assert_each_row_on_one_side(rows, split)
    side = sides(split)  # the two human texts joined by one machine text, and the text in both domains' files
    assert side["arxiv human 0"] == side["arxiv human 1"] == side["arxiv davinci machine 1"]
    assert side["arxiv human 3"] == side["wikihow flant5 machine 2"] == side["arxiv chatgpt machine 3"]


@pytest.mark.parametrize("seed", range(4))
def test_generator_holdout_trains_on_no_text_of_the_held_out_generators_files(tmp_path, seed):
    corpus, rows = leaky_corpus(tmp_path)
    split = splits.split_corpus(corpus, False, 0.2, "flant5", 0.25, seed=seed)
    assert_each_row_on_one_side(rows, split)
    flant5_texts = {row["machine_text"] for (_, generator), rs in rows.items() if generator == "flant5" for row in rs}
    assert not flant5_texts & {doc.text for doc in split.train}
    assert flant5_texts & {doc.text for doc in split.val}


@pytest.mark.parametrize("seed", range(4))
def test_domain_holdout_trains_on_no_text_of_the_held_out_domains_files(tmp_path, seed):
    corpus, rows = leaky_corpus(tmp_path)
    split = splits.split_corpus(corpus, False, 0.1, None, 0.25, seed=seed, val_domain="wikihow")
    assert_each_row_on_one_side(rows, split)
    wikihow_texts = {
        text for (domain, _), rs in rows.items() if domain == "wikihow" for row in rs for text in row.values()
    }
    assert not wikihow_texts & {doc.text for doc in split.train}
    # The text in both domains' files is the arxiv document of a wikihow group: dropped, counted, on no side.
    assert "arxiv human 3" not in sides(split) and split.dropped["other_domain_in_validation_group"] >= 1


def held_out_set(texts: list[str]) -> heldout.HeldOutSet:
    documents = pd.DataFrame({"id": range(len(texts)), "text": texts, "label": [i % 2 for i in range(len(texts))]})
    return heldout.HeldOutSet("t", "t.jsonl", documents, len(texts))


def test_overlap_removal_drops_test_documents_seen_in_training_or_validation():
    test_set = held_out_set(["seen in training", "seen in validation", "seen in both", "new one", "new two"])
    heldout.remove_overlap(
        [test_set], ["seen in training", "seen in both", "other"], ["seen in validation", "seen in both"]
    )
    assert test_set.documents["text"].tolist() == ["new one", "new two"]
    assert test_set.overlap_removed == {"train": 2, "validation": 1}  # a text in both counts once, for training
    summary = test_set.summary()
    assert summary["test_overlap_removed"] == 3 and summary["documents_read"] == 5
    assert summary["documents"] == {"human": 1, "machine": 1}
    untouched = held_out_set(["nothing", "seen"])
    heldout.remove_overlap([untouched], [], [])
    assert len(untouched.documents) == 2 and untouched.overlap_removed == {"train": 0, "validation": 0}


def test_overlap_removal_compares_texts_as_training_normalised_them(tmp_path):
    corpus, rows = leaky_corpus(tmp_path / "m4")
    split = splits.split_corpus(corpus, True, 0.3, None, 0.1, seed=0)
    train_text, val_text = split.train[0].text, split.val[0].text
    test_file = write_jsonl(
        tmp_path / "test.jsonl",
        [
            {"text": f"  {train_text.replace(' ', '   ')}\n", "label": 0},  # the same text, spaced differently
            {"text": val_text.replace(" ", "\n"), "label": 1},
            {"text": "a text the run never saw", "label": 1},
        ],
    )
    (test_set,) = heldout.read_test_sets([str(test_file)], None, None, dl.TextNormalization(False, False))
    heldout.remove_overlap([test_set], [d.text for d in split.train], [d.text for d in split.val])
    assert test_set.documents["text"].tolist() == ["a text the run never saw"]
    assert test_set.overlap_removed == {"train": 1, "validation": 1}
    (again,) = heldout.read_test_sets([str(test_file)], None, None, dl.TextNormalization(False, False))
    heldout.remove_overlap([again], [train_text, val_text], [val_text])  # a text on both lists counts once
    assert again.overlap_removed == {"train": 2, "validation": 0} and len(again.documents) == 1
