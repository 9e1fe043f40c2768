"""Search -> export -> predict as a user runs it, and the bad inputs of export and predict.

Real CLI runs on the tiny real tasks and module of cli_helpers (sms_spam and subj, 200 rows each;
2000 GloVe words). The exported SavedModel is loaded in a fresh Python that never imports
automl_transfer (nor tensorflow_text), and its accuracy on the task's test rows must equal the
card's; `--mode=predict` on those rows gives the same labels.
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import HANG_GUARD_S, REPO_ROOT, cli, command

from automl_transfer.tasks import load_task

FRESH_PROCESS = """
import json, sys
import tensorflow as tf
texts = json.load(open(sys.argv[2]))
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(text=tf.constant(texts))
assert "automl_transfer" not in sys.modules and "tensorflow_text" not in sys.modules
print(json.dumps({"labels": [v.decode() for v in out["label"].numpy()],
                  "shape": list(out["probabilities"].shape)}))
"""


def _run(*flags: str) -> subprocess.CompletedProcess:
    return cli([sys.executable, str(REPO_ROOT / "run_experiment.py"), *flags])


def _one_line_error(result: subprocess.CompletedProcess, message: str, after_tf: bool = False
                    ) -> None:
    """Exit 2 and one `error:` line; `after_tf`: TensorFlow's own start-up lines may precede it."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or after_tf, result.stderr
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr


@pytest.fixture(scope="module")
def search(workdir) -> Path:
    experiment = workdir / "export_search"
    result = cli(command(workdir, experiment, "--tensorboard=false"))
    assert result.returncode == 0, result.stderr
    return experiment


@pytest.fixture(scope="module")
def exported(workdir, search) -> Path:
    model = workdir / "model"
    result = _run("--mode=export", f"--experiment_dir={search}", f"--export_dir={model}",
                  f"--tasks={workdir / 'sms_spam.csv'}", "--export_top_k=2")
    assert result.returncode == 0, result.stderr
    assert "exported sms_spam" in result.stdout
    return model


def test_card_describes_the_export(exported):
    card = json.loads((exported / "card.json").read_text())
    assert card["task"] == "sms_spam" and card["class_names"] == ["ham", "spam"]
    candidates = card["retraining"]["candidates"]
    assert len(candidates) == 2 and all(len(c["valid_accuracies"]) == 3 for c in candidates)
    chosen = max(candidates, key=lambda c: c["mean_valid_accuracy"])
    assert card["config"] == chosen["config"] and card["trial_ids"] == chosen["trial_ids"]
    # The export trains the chosen configuration with its first fresh seed: same figures.
    assert card["seed"] == chosen["seeds"][0]
    assert card["valid_accuracy"] == chosen["valid_accuracies"][0]
    assert card["search"]["searcher"]["space"]


def test_fresh_process_loads_the_model_and_reproduces_test_accuracy(exported, workdir, tmp_path):
    task = load_task(str(workdir / "sms_spam.csv"))
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(list(task.test.texts)))
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(exported), str(texts)],
                            capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["shape"] == [len(task.test), 2]
    truth = [task.label_names[i] for i in task.test.labels]
    accuracy = sum(p == t for p, t in zip(out["labels"], truth)) / len(truth)
    assert accuracy == json.loads((exported / "card.json").read_text())["test_accuracy"]


def test_predict_csv_and_txt(exported, workdir, tmp_path):
    task = load_task(str(workdir / "sms_spam.csv"))
    rows = tmp_path / "test_rows.csv"
    with open(rows, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label"])
        writer.writerows([i, text, task.label_names[label]]
                         for i, (text, label) in enumerate(zip(task.test.texts, task.test.labels)))
    output = tmp_path / "pred.csv"
    result = _run("--mode=predict", f"--model_dir={exported}", f"--input={rows}", f"--output={output}")
    assert result.returncode == 0, result.stderr
    assert "predicted 20 rows" in result.stderr
    with open(output, newline="", encoding="utf-8") as f:
        predicted = list(csv.DictReader(f))
    assert list(predicted[0]) == ["id", "text", "label", "predicted_label", "p_ham", "p_spam"]
    accuracy = sum(r["predicted_label"] == r["label"] for r in predicted) / len(predicted)
    assert accuracy == json.loads((exported / "card.json").read_text())["test_accuracy"]
    assert all(abs(float(r["p_ham"]) + float(r["p_spam"]) - 1) < 1e-5 for r in predicted)

    lines = tmp_path / "new.txt"
    lines.write_text("\n".join(r["text"].replace("\n", " ") for r in predicted[:5]) + "\n")
    result = _run("--mode=predict", f"--model_dir={exported}", f"--input={lines}",
                  f"--output={tmp_path / 'txt.csv'}")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "txt.csv", newline="", encoding="utf-8") as f:
        from_txt = list(csv.DictReader(f))
    assert [r["label"] for r in from_txt] == [r["predicted_label"] for r in predicted[:5]]


def test_export_bad_inputs(search, workdir, tmp_path):
    _one_line_error(_run("--mode=export", f"--experiment_dir={tmp_path}", f"--export_dir={tmp_path / 'm'}"),
                    "no trials here")
    _one_line_error(_run("--mode=export", f"--experiment_dir={search}", f"--export_dir={tmp_path / 'm'}",
                         "--tasks=sst2"), "task 'sst2' is not one of the run's tasks (sms_spam,subj)")
    _one_line_error(_run("--mode=export", f"--experiment_dir={search}", f"--export_dir={tmp_path / 'm'}"),
                    "name the one to export with --tasks")
    assert not (tmp_path / "m").exists()


def test_predict_bad_inputs(exported, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("text\nhello\n")
    output = tmp_path / "out.csv"
    _one_line_error(_run("--mode=predict", f"--model_dir={tmp_path / 'none'}", f"--input={good}",
                         f"--output={output}"), "no exported model here")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a model")
    (broken / "card.json").write_text((exported / "card.json").read_text())
    _one_line_error(_run("--mode=predict", f"--model_dir={broken}", f"--input={good}",
                         f"--output={output}"), "cannot load the exported model", after_tf=True)
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("body,label\nhello,ham\n")
    _one_line_error(_run("--mode=predict", f"--model_dir={exported}", f"--input={no_text}",
                         f"--output={output}"), "no 'text' column (columns: body,label)")
    unquoted = tmp_path / "unquoted.csv"
    unquoted.write_text("text\nhello\nwin a prize, call now\n")
    _one_line_error(_run("--mode=predict", f"--model_dir={exported}", f"--input={unquoted}",
                         f"--output={output}"), "line 3 has 2 fields, the header has 1")
    for empty, content in (("empty.csv", "text\n"), ("empty.txt", ""), ("blank.csv", "")):
        (tmp_path / empty).write_text(content)
        _one_line_error(_run("--mode=predict", f"--model_dir={exported}", f"--input={tmp_path / empty}",
                             f"--output={output}"), "empty input")
    assert not output.exists()
