"""Cleaning of raw web text (prepare_data.py, run once on the raw files): `clean_text` for every source.

It removes markup that tells a detector where a text came from rather than who wrote it: M4's human arXiv abstracts
carry LaTeX and the Reddit dumps carry HTML entities, markdown and links, while machine texts rarely do. The
training-time normalisation (whitespace, digits, `canonicalize`) is `data_loaders.normalize_text`.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from typing import NamedTuple

# Entities escaped more than once (`&amp;amp;lt;`) need one html.unescape per level.
MAX_UNESCAPE_ROUNDS = 5

# What `clean_text` removes, in this order (an unmatched group of a replacement is empty): code blocks go before
# tags and markdown (their content is not prose), URLs go before emphasis (their underscores are not emphasis).
_MARKUP = (
    (re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL), "\n"),  # fenced code
    (re.compile(r"<(pre|code)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL), " "),
    (re.compile(r"`([^`\n]+)`"), r"\1"),
    (re.compile(r"<!--.*?-->", re.DOTALL), " "),
    (re.compile(r"<\s*(br|/p|p|/div|div|/li|li|/h[1-6])\b[^>]*>", re.IGNORECASE), "\n"),
    # A tag starts with a letter (or `/` + letter): "a < b > c" in prose is left alone.
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),
    (
        re.compile(
            r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|\\begin\{(equation|align|eqnarray|math|displaymath|gather|multline)"
            r"\*?\}.*?\\end\{\1\*?\}",
            re.DOTALL,
        ),
        " ",
    ),
    # Pandoc's rule for inline math: `$` + non-space ... non-space + `$` not followed by a digit, within one
    # paragraph (arXiv abstracts wrap lines inside math), so prices and tickers ("$5 and $10", "$GME") stay.
    (re.compile(r"(?<![\\$])\$(?=\S)(?:[^$\n]|\n(?![ \t]*\n)){1,300}?(?<=\S)\$(?!\d)"), " "),
    # LaTeX commands outside math: references go, formatting keeps its argument (`\emph{x}` -> `x`, `\msun` -> ``).
    (re.compile(r"\\(?:cite[pt]?|ref|eqref|label|url|footnote)\*?\{[^{}]*\}"), " "),
    (re.compile(r"\\[A-Za-z]+\*?(?:\{([^{}\n]*)\})?"), r"\1"),
    (re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)"), r"\1"),  # markdown image
    (re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)|\[([^\]\n]+)\]\[[^\]\n]*\]"), r"\1\2"),  # markdown link
    (re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$", re.MULTILINE), ""),  # markdown link definition
    # A URL's last character is not sentence punctuation ("see www.x.org." keeps its full stop).
    (re.compile(r"<?\b(?:https?://|ftp://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]>?", re.IGNORECASE), " "),
    (re.compile(r"^[ \t]*#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE), r"\1"),  # markdown header
    (re.compile(r"^[ \t]*(?:[-=*_][ \t]*){3,}$", re.MULTILINE), ""),  # markdown rule
    (re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE), ""),  # blockquote
    # `**` is never literal in prose, so a bold span may have spaces inside; `__` may be (`__init__`), so not.
    (re.compile(r"\*\*(.+?)\*\*|__(?=\S)(.+?)(?<=\S)__", re.DOTALL), r"\1\2"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.DOTALL), r"\1"),  # strike-through
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # italic
    # Underscores inside words (snake_case) are not emphasis.
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),
    # Then whitespace: line breaks made "\n", invisible characters removed, a run of whitespace other than line
    # breaks made one space (a single space is left alone: matching every space would make one Python string per
    # word of the text in re.sub, ten times its size for a 48 MB document), lines trimmed, at most one blank line.
    (re.compile(r"\r\n?"), "\n"),
    (re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]"), ""),
    (re.compile(r"[^\S\n]{2,}|[^\S\n ]"), " "),
    (re.compile(r" ?\n ?"), "\n"),
    (re.compile(r"\n{3,}"), "\n\n"),
)


def unescape_entities(text: str) -> str:
    """Decode HTML entities, including entities escaped several times (`&amp;amp;` -> `&`)."""
    for _ in range(MAX_UNESCAPE_ROUNDS):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def clean_text(text: str) -> str:
    """Remove markup from one text: entities are decoded first (an escaped `&lt;b&gt;` is a tag too), then
    each of `_MARKUP` in turn."""
    text = unescape_entities(text)
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text.strip()


# Canonicalisation: edits that change a text's characters but not what a reader sees (RAID's homoglyph and
# zero-width-space attacks) undone before a detector sees the text.


class _ScriptTables(NamedTuple):
    format_chars: re.Pattern  # Unicode category Cf: zero-width spaces and joiners, word joiner, BOM, soft hyphen
    astral_format_chars: re.Pattern  # those above U+FFFF: tag characters (invisible ASCII), musical format signs
    look_alike: re.Pattern  # a letter of another script that Unicode lists as confusable with an ASCII letter
    to_latin: dict[int, str]  # str.translate table: each such letter -> its ASCII letter
    foreign_letters: re.Pattern  # a run of letters neither Latin nor look-alikes (Cyrillic б, Greek λ, ...)
    latin_letters: re.Pattern  # a run of Latin letters
    latin_word: re.Pattern  # a whole word of Latin letters and look-alikes


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # one range: tested at C speed, unlike classes of many
_LETTER_RUN = re.compile(r"[^\W\d_]+")


def _char_class(ranges: list[tuple[int, int]], astral: bool = False) -> str:
    """The inside of a [] class: the ranges below U+10000, or (astral) the part of them from U+10000.

    re tests a class of code points below U+10000 against a bitmap, but one with a code point above it range after
    range: ten times slower on every character. So look-alikes above U+FFFF (Carian, Old Italic, ...) stay.
    """
    clipped = [(max(start, 0x10000), end) if astral else (start, min(end, 0xFFFF)) for start, end in ranges]
    return "".join(f"\\U{start:08x}-\\U{end:08x}" for start, end in clipped if start <= end)


@functools.cache
def _script_tables() -> _ScriptTables:
    """Built once, on the first non-ASCII text, from confusable-homoglyphs' copy of Unicode TR39's confusables.

    Only letters of other scripts whose prototype is one ASCII letter are mapped (never an ASCII or Latin character:
    TR39 also maps `0` to `O` and `1` to `l`, which is for comparing identifiers, not for text). TR39's prototype of
    the vertical-stroke letters is `l`; an upper-case one (Cyrillic І, Greek Ι) is an `I`.
    """
    from confusable_homoglyphs import categories, confusables

    data = categories.categories_data
    ranges: dict[str, list[tuple[int, int]]] = {}
    for start, end, script, category in data["code_points_ranges"]:
        key = "Cf" if data["categories"][category] == "Cf" else data["iso_15924_aliases"][script]
        ranges.setdefault(key, []).append((start, end))
    to_latin = {}
    for char, entries in confusables.confusables_data.items():
        # NFKC runs first: a letter it changes (Greek ϲ, ϱ) is never seen, and the attack must not use it either.
        if len(char) > 1 or char.isascii() or char > "\uffff" or unicodedata.normalize("NFKC", char) != char:
            continue
        prototypes = [entry["c"] for entry in entries if len(entry["c"]) == 1 and entry["c"].isascii()]
        foreign = categories.alias(char) not in ("LATIN", "COMMON", "INHERITED", "Unknown")
        if foreign and char.isalpha() and len(prototypes) == 1 and prototypes[0].isalpha():
            to_latin[ord(char)] = "I" if prototypes[0] == "l" and char.isupper() else prototypes[0]
    look_alikes = _char_class([(code, code) for code in sorted(to_latin)])
    latin = _char_class(ranges["LATIN"])
    not_foreign = _char_class(ranges["COMMON"] + ranges["INHERITED"] + ranges["LATIN"]) + look_alikes
    return _ScriptTables(
        format_chars=re.compile(f"[{_char_class(ranges['Cf'])}]"),
        astral_format_chars=re.compile(f"[{_char_class(ranges['Cf'], astral=True)}]"),
        look_alike=re.compile(f"[{look_alikes}]"),
        to_latin=to_latin,
        # Letters above U+FFFF (rare scripts) are not counted as foreign.
        foreign_letters=re.compile(f"[^\\W\\d_{not_foreign}\\U00010000-\\U0010ffff]+"),
        latin_letters=re.compile(f"[{latin}]+"),
        latin_word=re.compile(f"(?<![^\\W\\d_])[{latin}{look_alikes}]+(?![^\\W\\d_])"),
    )


def canonicalize(text: str) -> str:
    """NFKC, invisible format characters removed, and look-alike letters of other scripts put back to Latin.

    Look-alikes are mapped only in a text with more Latin letters than letters of other scripts, and only once a
    word mixing Latin letters and look-alikes (`Рaris`) shows an attack. Then every look-alike is mapped (`сору` for
    `copy`), except, in a text with other letters of other scripts (a Greek `λ`, a Chinese name), a word of
    look-alikes of one script beside a word of that script (a quoted `Москва его` stays). So a Russian text keeps
    its `а`, `с` (even in `ХIII`), an English text a lone Greek `γ`. ASCII texts (most of a corpus) are returned
    as they are: no step changes them.
    """
    if text.isascii():
        return text
    tables = _script_tables()
    text = tables.format_chars.sub("", text)
    if _ASTRAL.search(text):
        text = tables.astral_format_chars.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    if not tables.look_alike.search(text):
        return text
    foreign = len(text) - len(tables.foreign_letters.sub("", text))
    if foreign >= len(text) - len(tables.latin_letters.sub("", text)):
        return text
    words = tables.latin_word.findall(text)
    if not any(tables.look_alike.search(word) and tables.latin_letters.search(word) for word in words):
        return text
    if not foreign:
        return text.translate(tables.to_latin)
    words = list(_LETTER_RUN.finditer(text))
    is_foreign = [bool(tables.foreign_letters.search(word[0])) for word in words]
    pieces, end = [], 0
    for i, word in enumerate(words):
        if is_foreign[i] or not tables.look_alike.search(word[0]):
            continue
        if tables.latin_letters.search(word[0]) or not _quoted(
            word[0], [words[j][0] for j in (i - 1, i + 1) if 0 <= j < len(words) and is_foreign[j]]
        ):
            pieces += [text[end : word.start()], word[0].translate(tables.to_latin)]
            end = word.end()
    return "".join(pieces) + text[end:]


def _quoted(word: str, foreign_neighbours: list[str]) -> bool:
    """Whether a word of look-alikes only is a real word of another script (`его` beside `Москва`): its letters
    are of one script, that of a neighbouring word; an attack mixes scripts (`ԁҽсαүѕ`) or stands among Latin words."""
    from confusable_homoglyphs import categories

    scripts = {categories.alias(char) for char in word}
    return len(scripts) == 1 and any(
        scripts <= {categories.alias(char) for char in other} for other in foreign_neighbours
    )
