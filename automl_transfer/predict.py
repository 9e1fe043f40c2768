"""Classify new texts with an exported model (export.py), a batch at a time.

Input: a CSV with a `text` column (other columns are copied through) or a plain .txt file, one
text per line. Output: a CSV with the input's columns, then `label` (the predicted class; named
`predicted_label` when the input already has a `label` column) and `p_<class>`, one probability
column per class. Rows stream through in batches, so the input may be larger than memory; the
output appears only when every row is done (written beside it, then renamed).
"""
from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

import numpy as np

from automl_transfer.errors import UserError

CARD_FILE = "card.json"
SIGNATURE = "serving_default"  # the exported model's signature (serving.py writes it)
BATCH_SIZE = 1000


class Predictor:
    """An exported model, loaded: `predict(texts)` -> (probabilities, labels)."""

    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir).expanduser()
        if not (model_dir / "saved_model.pb").is_file():
            raise UserError(f"{model_dir}: no exported model here (saved_model.pb is missing); "
                            f"write one with --mode=export")
        try:
            self.card = json.loads((model_dir / CARD_FILE).read_text(encoding="utf-8"))
            self.class_names = [str(c) for c in self.card["class_names"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{model_dir / CARD_FILE}: not a readable model card ({err})") from None
        import tensorflow as tf  # after the checks above: a wrong path is refused in a second
        try:
            self._serve = tf.saved_model.load(str(model_dir)).signatures[SIGNATURE]
        except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"{model_dir}: cannot load the exported model ({first_line})") from None
        self._tf = tf

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Probabilities [len(texts), classes] and the predicted class name of each text."""
        out = self._serve(text=self._tf.constant(list(texts), self._tf.string))
        return out["probabilities"].numpy(), [v.decode("utf-8") for v in out["label"].numpy()]


def _columns_and_rows(path: Path, handle: IO[str]) -> tuple[list[str], Iterator[dict[str, str]]]:
    """(columns, rows) of a CSV with a `text` column or of a .txt file (column `text`)."""
    if path.suffix.lower() == ".txt":
        return ["text"], ({"text": line.rstrip("\r\n")} for line in handle)
    reader = csv.DictReader(handle)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if not columns:
        raise UserError(f"{path}: empty input (no header, no rows)")
    if "text" not in columns:
        raise UserError(f"{path}: no 'text' column (columns: {','.join(columns)})")
    reader.fieldnames = columns
    return columns, _rows_as_wide_as_header(path, reader, len(columns))


def _rows_as_wide_as_header(path: Path, reader: csv.DictReader, width: int) -> Iterator[dict[str, str]]:
    """The reader's rows; one wider or narrower than the header is an error, since reading it
    would classify a text cut at an unquoted comma."""
    for row in reader:
        extra = len(row.get(None) or [])
        missing = sum(value is None for key, value in row.items() if key is not None)
        if extra or missing:
            raise UserError(f"{path}: line {reader.line_num} has {width + extra - missing} fields, the "
                            f"header has {width} (quote texts that contain commas, or give a .txt file)")
        yield row


def _batches(rows: Iterator[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    batch: list[dict[str, str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path,
                 batch_size: int = BATCH_SIZE, log: Callable[[str], None] = lambda _: None) -> int:
    """Write predictions of every input row to `output_path`; returns the number of rows."""
    input_path, output_path = Path(input_path).expanduser(), Path(output_path).expanduser()
    if not input_path.is_file():
        raise UserError(f"{input_path}: input file not found")
    partial = output_path.with_name(output_path.name + ".partial")
    count = 0
    try:
        with open(input_path, encoding="utf-8-sig", newline="") as handle:
            columns, rows = _columns_and_rows(input_path, handle)
            batches = _batches(rows, batch_size)
            first = next(batches, None)
            if first is None:
                raise UserError(f"{input_path}: empty input (no texts to classify)")
            predictor = Predictor(model_dir)
            label_column = "predicted_label" if "label" in columns else "label"
            output_path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(columns + [label_column] + [f"p_{c}" for c in predictor.class_names])
                for batch in itertools.chain([first], batches):
                    probabilities, labels = predictor.predict([row["text"] or "" for row in batch])
                    for row, label, probs in zip(batch, labels, probabilities):
                        writer.writerow([row.get(c, "") for c in columns] + [label] +
                                        [f"{p:.6g}" for p in probs])
                    count += len(batch)
                    log(f"predicted {count} rows")
        os.replace(partial, output_path)
    except csv.Error as err:
        raise UserError(f"{input_path}: malformed CSV ({err})") from None
    except UnicodeDecodeError:
        raise UserError(f"{input_path}: not UTF-8 text; re-save it as UTF-8") from None
    finally:
        partial.unlink(missing_ok=True)
    return count
