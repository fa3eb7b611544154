"""Train/validation splits that never separate a group: a human text and the machine texts made from it.

Three seeded flows (rules in TRAINING_GUIDE_COMPLETE.md): grouped and stratified by label within each domain; the
generator hold-out, whose validation generator is never trained on; the domain hold-out, likewise for a domain.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from data_loaders import HUMAN, LABEL_NAMES, MACHINE, Corpus, Document, canonical_generator
from m4_training.cli import UserError, counted

logger = logging.getLogger(__name__)


@dataclass
class Split:
    train: list[Document]
    val: list[Document]
    dropped: Counter = field(default_factory=Counter)
    dropped_documents: list[tuple[str, Document]] = field(default_factory=list)
    flow: str = "stratified"
    sampling: dict[str, Any] = field(default_factory=dict)  # per side: documents available and kept (sample_side)
    augmentation: dict[str, Any] = field(default_factory=dict)  # attacked training copies (augment_training)

    def drop(self, document: Document, reason: str) -> None:
        self.dropped[reason] += 1
        self.dropped_documents.append((reason, document))


def _groups(documents: list[Document]) -> dict[int, list[Document]]:
    groups: dict[int, list[Document]] = defaultdict(list)
    for doc in documents:
        groups[doc.group_id].append(doc)
    return dict(sorted(groups.items()))


def stratified_group_split(documents: list[Document], validation_split: float, seed: int) -> Split:
    """Whole groups go to one side; within each domain the validation side gets its share of each label: groups are
    visited in a seeded order, and one joins validation when that brings the domain's label counts nearer their targets.
    """
    rng = random.Random(seed)
    groups_by_domain: dict[str, list[list[Document]]] = defaultdict(list)
    for members in _groups(documents).values():
        groups_by_domain[members[0].domain].append(members)
    val_group_ids: set[int] = set()
    for domain in sorted(groups_by_domain):
        groups = groups_by_domain[domain]
        rng.shuffle(groups)
        totals = Counter(doc.label for members in groups for doc in members)
        target = {label: validation_split * totals[label] for label in (HUMAN, MACHINE)}
        taken = Counter()
        for members in groups:
            counts = Counter(doc.label for doc in members)
            before = sum(abs(taken[k] - target[k]) for k in target)
            after = sum(abs(taken[k] + counts[k] - target[k]) for k in target)
            if after < before:
                taken.update(counts)
                val_group_ids.add(members[0].group_id)
    train = [doc for doc in documents if doc.group_id not in val_group_ids]
    val = [doc for doc in documents if doc.group_id in val_group_ids]
    return Split(train=train, val=val, flow="stratified")


def generator_holdout_split(
    corpus: Corpus, val_generator: str, validation_split: float, reddit_val_fraction: float, seed: int
) -> Split:
    """Validate on a generator never seen in training; see TRAINING_GUIDE_COMPLETE.md for the rules."""
    val_generator = canonical_generator(val_generator)
    found = corpus.generators_by_domain
    if not any(val_generator in gens for gens in found.values()):
        listing = "; ".join(f"{d}: {', '.join(g)}" for d, g in found.items()) or "none"
        raise UserError(
            f"--val_generator {val_generator} is not in the loaded data (no <domain>_{val_generator}.jsonl file "
            f"in --data_dir for --train_domains; generators found per domain: {listing})"
        )
    rng = random.Random(seed)
    groups = _groups(corpus.documents)
    m4_group_ids = [gid for gid, members in groups.items() if any(corpus.from_m4(doc) for doc in members)]
    # Per domain, so every domain is represented in validation as it is in the data.
    m4_group_ids_by_domain: dict[str, list[int]] = defaultdict(list)
    for gid in m4_group_ids:
        m4_group_ids_by_domain[groups[gid][0].domain].append(gid)
    val_group_ids: set[int] = set()
    for domain in sorted(m4_group_ids_by_domain):
        in_domain = m4_group_ids_by_domain[domain]
        candidates = [gid for gid in in_domain if any(d.generator == val_generator for d in groups[gid])]
        n_val_groups = max(1, round(validation_split * len(in_domain)))
        val_group_ids.update(rng.sample(candidates, n_val_groups) if len(candidates) > n_val_groups else candidates)
    split = Split(train=[], val=[], flow="generator_holdout")
    for gid in m4_group_ids:
        for doc in groups[gid]:
            is_val_generator = doc.generator == val_generator
            if gid in val_group_ids:
                if doc.label == HUMAN or is_val_generator:
                    split.val.append(doc)
                else:
                    split.drop(doc, "other_generator_in_validation_group")
            elif is_val_generator:
                split.drop(doc, "val_generator_in_training_group")
            else:
                split.train.append(doc)
    reddit_group_ids = sorted(groups.keys() - set(m4_group_ids))
    return _with_reddit_groups(split, groups, reddit_group_ids, reddit_val_fraction, rng)


def _with_reddit_groups(
    split: Split, groups: dict[int, list[Document]], group_ids: list[int], fraction: float, rng: random.Random
) -> Split:
    """The split with a seeded `fraction` of the Reddit-file posts (one group each) added to validation and the
    rest to training, each side in corpus order."""
    rng.shuffle(group_ids)
    n_val = round(fraction * len(group_ids))
    for position, gid in enumerate(group_ids):
        (split.val if position < n_val else split.train).extend(groups[gid])
    split.train.sort(key=lambda doc: doc.doc_id)
    split.val.sort(key=lambda doc: doc.doc_id)
    return split


def domain_holdout_split(corpus: Corpus, val_domain: str, reddit_val_fraction: float, seed: int) -> Split:
    """Validate on a domain never seen in training: every group with a `val_domain` document is validation, keeping
    only those (others are dropped, counted); other M4 groups train; the Reddit-file posts are split by
    `reddit_val_fraction` as in the generator hold-out, unless they are the held-out domain themselves."""
    val_domain = val_domain.lower()
    groups = _groups(corpus.documents)
    m4_domains = ", ".join(corpus.generators_by_domain) or "none"  # the Reddit file's domain is none of them
    if val_domain not in corpus.generators_by_domain:
        raise UserError(
            f"--val_domain {val_domain} is not in the loaded data (no <domain>_<generator>.jsonl file of it in "
            f"--data_dir for the loaded generators); M4 domains found: {m4_domains}"
        )
    split = Split(train=[], val=[], flow="domain_holdout")
    reddit_group_ids = []
    for gid, members in groups.items():
        if any(doc.domain == val_domain for doc in members):
            for doc in members:
                if doc.domain == val_domain:
                    split.val.append(doc)
                else:
                    split.drop(doc, "other_domain_in_validation_group")
        elif any(corpus.from_m4(doc) for doc in members):
            split.train.extend(members)
        else:
            reddit_group_ids.append(gid)
    return _with_reddit_groups(split, groups, reddit_group_ids, reddit_val_fraction, random.Random(seed))


def even_shares(budget: int, available: dict[Any, int]) -> dict[Any, int]:
    """`budget` shared as evenly as the `available` counts allow: what one key cannot use goes to the others."""
    shares = {}
    keys = sorted(available, key=lambda key: (available[key], key))
    for position, key in enumerate(keys):
        shares[key] = min(available[key], budget // (len(keys) - position))
        budget -= shares[key]
    return shares


def sample_side(split: Split, side: str, max_documents: int, seed: int) -> None:
    """Keep at most `max_documents` documents of one side: the labels share the budget evenly, then within each label
    its sources (domains) do, as far as each has documents, each cell drawn with a seed. A side never gains a
    document, so no group ends up on both sides. The rest are dropped (counted); `split.sampling` records the counts.
    """
    documents = getattr(split, side)
    cells: dict[tuple[str, int], list[Document]] = defaultdict(list)
    for doc in documents:
        cells[doc.domain, doc.label].append(doc)
    available = {cell: len(docs) for cell, docs in cells.items()}
    quota = {}
    for label, budget in even_shares(max_documents, Counter(doc.label for doc in documents)).items():
        sources = {domain: count for (domain, other), count in available.items() if other == label}
        quota |= {(domain, label): share for domain, share in even_shares(budget, sources).items()}
    rng = random.Random(seed)
    kept = {doc.doc_id for cell in sorted(cells) for doc in rng.sample(cells[cell], quota[cell])}
    for doc in documents:
        if doc.doc_id not in kept:
            split.drop(doc, f"over_max_{side}_samples")
    setattr(split, side, [doc for doc in documents if doc.doc_id in kept])
    split.sampling[side] = {"max_documents": max_documents} | {
        name: {
            domain: {label_name: counts.get((domain, label), 0) for label, label_name in LABEL_NAMES.items()}
            for domain in sorted({domain for domain, _ in cells})
        }
        for name, counts in (("available", available), ("kept", quota))
    }


def split_corpus(
    corpus: Corpus,
    stratified: bool,
    validation_split: float,
    val_generator: str,
    reddit_val_fraction: float,
    seed: int,
    max_train_samples: int | None = None,
    max_val_samples: int | None = None,
    val_domain: str | None = None,
) -> Split:
    """Split into train/val (grouped, leak-free), then sample the requested number of documents."""
    if val_domain is not None:
        split = domain_holdout_split(corpus, val_domain, reddit_val_fraction, seed)
    elif stratified:
        split = stratified_group_split(corpus.documents, validation_split, seed)
    else:
        split = generator_holdout_split(corpus, val_generator, validation_split, reddit_val_fraction, seed)
    for side, max_documents, side_seed in (("train", max_train_samples, seed), ("val", max_val_samples, seed + 1)):
        if max_documents is not None:
            sample_side(split, side, max_documents, side_seed)
    if not split.train or not split.val:
        raise UserError(
            f"the {split.flow} split left {counted(len(split.train), 'training document')} and "
            f"{counted(len(split.val), 'validation document')}; "
            "both need at least one (check --validation_split and the --max_*_samples flags)"
        )
    train_labels = Counter(doc.label for doc in split.train)
    if len(train_labels) < 2:
        (only,) = train_labels
        raise UserError(
            f"the training split has only {LABEL_NAMES[only]} documents ({train_labels[only]}); a detector needs "
            "both human and machine texts (check --train_domains, --train_generators and the files' text fields)"
        )
    if len({doc.label for doc in split.val}) < 2:
        logger.warning("The validation split has one class only: AUROC and F1 are undefined")
    return split


def group_overlap(split: Split) -> int:
    """Number of groups with documents on both sides (0 for every split this module makes)."""
    return len({doc.group_id for doc in split.train} & {doc.group_id for doc in split.val})
