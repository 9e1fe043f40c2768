"""Real English and Spanish training text for the embedding tables we train ourselves.

Sentences are tokenised with automl_transfer.text.tokenize, so a trained table's vocabulary is
exactly what a module will be asked for. brown.zip is left out on purpose: it is the Brown task's
text, and a table must not be trained on the text of a task it is evaluated on.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Callable

from automl_transfer.errors import UserError
from automl_transfer.text import tokenize

NLTK_DIR = "corpora/nltk_data-subset"
QUIJOTE = "corpora/gutenberg-quijote-es/pg2000.txt"
ENGLISH_ZIPS = ("movie_reviews", "abc", "state_union", "webtext", "inaugural")
# A treebank leaf "(tag word lemma)"; punctuation tags start with F, elided subjects are "*0*".
_CESS_LEAF = re.compile(r"\(([^\s()]+) ([^\s()]+)[^()]*\)")
_PG_START = re.compile(r"^\*\*\* START OF THE PROJECT GUTENBERG EBOOK.*$", re.MULTILINE)
_PG_END = re.compile(r"^\*\*\* END OF THE PROJECT GUTENBERG EBOOK.*$", re.MULTILINE)

Sentences = list[list[str]]


def _decode(raw: bytes) -> str:
    """UTF-8 where valid, else Latin-1 (the NLTK Spanish corpora and some English files)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _zip_texts(path: Path, keep: Callable[[str], bool]) -> list[str]:
    """Decoded contents of the members of a zip whose name passes `keep`, in name order."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted(n for n in archive.namelist() if not n.endswith("/") and keep(n))
            return [_decode(archive.read(n)) for n in names]
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: cannot read corpus zip ({err})") from None


def _line_sentences(texts: list[str]) -> Sentences:
    """One sentence per non-empty line (these corpora hold a sentence or paragraph per line)."""
    return [tokens for text in texts for line in text.splitlines() if (tokens := tokenize(line))]


def english_sentences(data_dir: Path) -> Sentences:
    """movie_reviews, abc, state_union, webtext and inaugural from the NLTK data subset."""
    sentences: Sentences = []
    for name in ENGLISH_ZIPS:
        texts = _zip_texts(data_dir / NLTK_DIR / f"{name}.zip",
                           lambda member: not member.endswith("README"))
        sentences.extend(_line_sentences(texts))
    return sentences


def _cess_sentences(texts: list[str]) -> Sentences:
    """Words of the CESS-ESP treebank leaves; a sentence ends at each full stop (tag Fp)."""
    sentences: Sentences = []
    for text in texts:
        current: list[str] = []
        for tag, word in _CESS_LEAF.findall(text):
            if tag == "Fp" and current:
                sentences.append(current)
                current = []
            elif not tag.startswith("F") and not word.startswith("*"):
                current.extend(tokenize(word))  # multiword names are joined with "_"
        if current:
            sentences.append(current)
    return sentences


def _conll_sentences(texts: list[str]) -> Sentences:
    """First column of CoNLL-2002 lines; blank lines separate sentences."""
    sentences: Sentences = []
    for text in texts:
        for block in re.split(r"\n\s*\n", text):
            words = [line.split(" ", 1)[0] for line in block.splitlines() if line.strip()]
            if tokens := tokenize(" ".join(words)):
                sentences.append(tokens)
    return sentences


def quijote_sentences(path: Path) -> Sentences:
    """Paragraphs of Don Quijote with the Project Gutenberg header and footer stripped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err})") from None
    start, end = _PG_START.search(text), _PG_END.search(text)
    if not start or not end:
        raise UserError(f"{path}: Project Gutenberg start/end markers not found")
    body = text[start.end():end.start()]
    return [tokens for para in re.split(r"\n\s*\n", body) if (tokens := tokenize(para))]


def spanish_sentences(data_dir: Path) -> Sentences:
    """CESS-ESP, CoNLL-2002 (esp.*) and Don Quijote."""
    nltk_dir = data_dir / NLTK_DIR
    cess = _zip_texts(nltk_dir / "cess_esp.zip", lambda member: member.endswith(".tbf"))
    conll = _zip_texts(nltk_dir / "conll2002.zip", lambda member: "/esp." in member)
    return (_cess_sentences(cess) + _conll_sentences(conll)
            + quijote_sentences(data_dir / QUIJOTE))


CORPORA: dict[str, Callable[[Path], Sentences]] = {
    "english": english_sentences, "spanish": spanish_sentences}
CORPUS_SOURCES = {
    "english": "NLTK movie_reviews, abc, state_union, webtext, inaugural",
    "spanish": "NLTK cess_esp, conll2002 esp.*, Gutenberg Don Quijote (pg2000)"}
