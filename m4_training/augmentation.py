"""Attack-augmented training: attacked copies of training documents, so that a detector learns to see through the
cheap edits a writer makes to evade it (RAID's attacks, m4_training/attacks.py).

After the split (and --max_train_samples), each training document gets, with probability --augment_rate, one copy
attacked by one of --augment_attacks at RAID's rate for it. Whether a document gets a copy, the attack and its
edits are seeded by --seed and the document's text, so a document gets the same copy whatever else is in the
corpus. A copy joins the training side in its source's group, with a new doc_id and its source's label, domain,
generator and sources: validation documents are never attacked, and no copy can reach validation. A copy whose
text, after the training normalisation, is its source's (article deletion on a text without articles, doubled
spaces, changed digits under --normalize_digits, look-alikes and zero-width spaces under --text_normalization) is
not added and is counted as unchanged; one whose text is already a document of the corpus (either side) is not
added either, and is counted as a duplicate.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from data_loaders import Corpus, Document, TextNormalization, normalize_text
from m4_training.attacks import attack_texts
from m4_training.splits import Split

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class AttackedCopy(Document):
    """A training document made by attacking another one (splits.jsonl names both)."""

    augmented_from: int  # the source document's doc_id
    attack: str


def augment_training(
    split: Split, corpus: Corpus, attacks: list[str], rate: float, seed: int, normalization: TextNormalization
) -> None:
    """Append attacked copies of `split.train`'s documents to it; `split.augmentation` counts them."""
    drawn: dict[str, list[Document]] = {name: [] for name in attacks}
    for doc in split.train:
        rng = random.Random(f"{seed}\0augment\0{doc.text}")  # a str seed is hashed with SHA-512: stable across runs
        if rng.random() < rate:
            drawn[rng.choice(attacks)].append(doc)
    known = {doc.text for doc in corpus.documents}
    next_id = 1 + max(doc.doc_id for doc in corpus.documents + corpus.conflicting_documents)
    counts = {kind: dict.fromkeys(attacks, 0) for kind in ("copies", "unchanged", "duplicates")}
    before = len(split.train)
    for name, sources in drawn.items():
        attacked, _ = attack_texts(name, [doc.text for doc in sources], seed=seed)
        for source, text in zip(sources, attacked, strict=True):
            text = normalize_text(text, normalization)
            kind = "unchanged" if text == source.text else "duplicates" if text in known else "copies"
            counts[kind][name] += 1
            if kind == "copies":
                known.add(text)
                copy = {"doc_id": next_id, "text": text, "augmented_from": source.doc_id, "attack": name}
                split.train.append(AttackedCopy(**vars(source) | copy))  # the source's label, group, ...
                next_id += 1
        if sources and not counts["copies"][name]:
            unchanged, duplicates = counts["unchanged"][name], counts["duplicates"][name]
            logger.warning(
                "--augment_attacks %s added no copy: of the %d training documents drawn for it, %d were unchanged "
                "after the training normalisation and %d duplicated a document",
                name,
                len(sources),
                unchanged,
                duplicates,
            )
    sizes = {"train_documents_before": before, "train_documents_after": len(split.train)}
    split.augmentation = {"attacks": attacks, "rate": rate, **counts, **sizes}
