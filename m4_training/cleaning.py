"""Cleaning of raw web text before it becomes training data: one function, `clean_text`, for every source.

This is the data-preparation stage (prepare_data.py), run once on the raw files. It removes markup that
tells a detector where a text came from rather than who wrote it: M4's human arXiv abstracts carry LaTeX
and the Reddit dumps carry HTML entities, markdown and links, while machine texts rarely do. The lighter,
training-time normalisation (whitespace, digits) is `data_loaders.normalize_text`, applied later to
every text, prepared or not.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from typing import NamedTuple

# Entities escaped more than once (`&amp;amp;lt;`) need one html.unescape per level.
MAX_UNESCAPE_ROUNDS = 5

_FENCED_CODE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
_HTML_CODE_BLOCK = re.compile(r"<(pre|code)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_BREAK = re.compile(r"<\s*(br|/p|p|/div|div|/li|li|/h[1-6])\b[^>]*>", re.IGNORECASE)
# A tag starts with a letter (or `/` + letter): "a < b > c" in prose is left alone.
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_LATEX_DISPLAY = re.compile(
    r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|\\begin\{(equation|align|eqnarray|math|displaymath|gather|multline)\*?\}"
    r".*?\\end\{\1\*?\}",
    re.DOTALL,
)
# Pandoc's rule for inline math: `$` + non-space ... non-space + `$` not followed by a digit, within one
# paragraph (arXiv abstracts wrap lines inside math), so prices and tickers ("$5 and $10", "$GME") stay.
_LATEX_INLINE = re.compile(r"(?<![\\$])\$(?=\S)(?:[^$\n]|\n(?![ \t]*\n)){1,300}?(?<=\S)\$(?!\d)")
# LaTeX commands outside math: references go, formatting keeps its argument (`\emph{x}` -> `x`, `\msun` -> ``).
_LATEX_REFERENCE = re.compile(r"\\(?:cite[pt]?|ref|eqref|label|url|footnote)\*?\{[^{}]*\}")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+\*?(?:\{([^{}\n]*)\})?")
_MARKDOWN_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)|\[([^\]\n]+)\]\[[^\]\n]*\]")
_MARKDOWN_LINK_DEFINITION = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$", re.MULTILINE)
# A URL's last character is not sentence punctuation ("see www.x.org." keeps its full stop).
_URL = re.compile(r"<?\b(?:https?://|ftp://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]>?", re.IGNORECASE)
_MARKDOWN_HEADER = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
_MARKDOWN_SETEXT_RULE = re.compile(r"^[ \t]*(?:[-=*_][ \t]*){3,}$", re.MULTILINE)
_BLOCKQUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE)
# `**` is never literal in prose, so a bold span may have spaces inside; `__` may be (`__init__`), so not.
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(?=\S)(.+?)(?<=\S)__", re.DOTALL)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.DOTALL)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
# Underscores inside words (snake_case) are not emphasis.
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
# A run of whitespace other than line breaks; a single space is left alone (matching every space would make one
# Python string per word of the text in re.sub: ten times its size for a 48 MB document).
_SPACES = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_BLANK_LINES = re.compile(r"\n{3,}")


def unescape_entities(text: str) -> str:
    """Decode HTML entities, including entities escaped several times (`&amp;amp;` -> `&`)."""
    for _ in range(MAX_UNESCAPE_ROUNDS):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def _strip_markdown(text: str) -> str:
    text = _MARKDOWN_HEADER.sub(r"\1", text)
    text = _MARKDOWN_SETEXT_RULE.sub("", text)
    text = _BLOCKQUOTE.sub("", text)
    text = _BOLD.sub(lambda match: match.group(1) or match.group(2), text)
    text = _STRIKE.sub(r"\1", text)
    text = _ITALIC_STAR.sub(r"\1", text)
    return _ITALIC_UNDERSCORE.sub(r"\1", text)


def _normalize_whitespace(text: str) -> str:
    """Runs of spaces become one space, lines are trimmed, and at most one blank line separates paragraphs."""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def clean_text(text: str) -> str:
    """Remove markup from one text; the order matters.

    Entities are decoded first (an escaped `&lt;b&gt;` is a tag too), code blocks go before tags and
    markdown (their content is not prose), URLs go before emphasis (their underscores are not emphasis),
    and whitespace is normalised last.
    """
    text = unescape_entities(text)
    text = _FENCED_CODE.sub("\n", text)
    text = _HTML_CODE_BLOCK.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub("", text)
    text = _LATEX_DISPLAY.sub(" ", text)
    text = _LATEX_INLINE.sub(" ", text)
    text = _LATEX_REFERENCE.sub(" ", text)
    text = _LATEX_COMMAND.sub(lambda match: match.group(1) or "", text)
    text = _MARKDOWN_IMAGE.sub(r"\1", text)
    text = _MARKDOWN_LINK.sub(lambda match: match.group(1) or match.group(2), text)
    text = _MARKDOWN_LINK_DEFINITION.sub("", text)
    text = _URL.sub(" ", text)
    text = _strip_markdown(text)
    return _normalize_whitespace(text)


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

    re tests a class of code points below U+10000 against a bitmap, but one with a code point above it range
    after range: ten times slower on every character of every text. Look-alikes above U+FFFF (Carian, Old
    Italic, ... letters that few fonts draw) are left alone for that reason.
    """
    clipped = [(max(start, 0x10000), end) if astral else (start, min(end, 0xFFFF)) for start, end in ranges]
    return "".join(f"\\U{start:08x}-\\U{end:08x}" for start, end in clipped if start <= end)


@functools.cache
def _script_tables() -> _ScriptTables:
    """Built once, on the first non-ASCII text, from the Unicode data that confusable-homoglyphs ships.

    Its confusables.json is Unicode TR39's confusables.txt: each character with the prototype it looks like.
    Only letters of other scripts whose prototype is one ASCII letter are mapped (never an ASCII or Latin
    character: TR39 also maps `0` to `O` and `1` to `l`, which is for comparing identifiers, not for text).
    TR39's prototype of the vertical-stroke letters is `l`; an upper-case one (Cyrillic І, Greek Ι) is an `I`.
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
        if (
            len(prototypes) == 1
            and prototypes[0].isalpha()
            and char.isalpha()
            and categories.alias(char) not in ("LATIN", "COMMON", "INHERITED", "Unknown")
        ):
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
    word mixing Latin letters and look-alikes (`Рaris`) shows an attack. In a text with no other letters of other
    scripts, every look-alike is then mapped (`а` for `a`, `сору` for `copy`); in one that has some (a Greek `λ`
    in a formula, a Chinese name), so is a word of look-alikes only unless it is of one script and a word beside
    it has letters of that script (a quoted `Москва его` stays). So a Russian or Kazakh text keeps its `а`, `с`,
    `і` (even in `ХIII` or a stray `nВ`), an English text keeps a Greek `γ` standing alone, and a German text
    quoting `его` keeps it. ASCII texts, most of a corpus, are returned as they are: no step changes them.
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
    is_foreign = [bool(tables.foreign_letters.search(word[0])) for word in words] + [False]  # [-1]: no word
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
