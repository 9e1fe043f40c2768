"""The Python API end to end on the tiny real task of cli_helpers: in-memory texts and labels ->
search -> trial records -> export -> predict, through the same code path as the CLI."""
from cli_helpers import SEED

from automl_transfer.api import TextClassifierSearch
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.tasks import load_task


def test_fit_trials_export_predict(workdir, tmp_path):
    task = load_task(str(workdir / "sms_spam.csv"))
    texts = list(task.train.texts + task.valid.texts + task.test.texts)
    labels = [task.label_names[i] for split in (task.train, task.valid, task.test) for i in split.labels]
    search = TextClassifierSearch(tmp_path / "run", trials=3, mode="random", seed=SEED,
                                  module_handles=[f"glove={workdir / 'glove2k'}"],
                                  max_in_flight=1)
    search.fit(texts, labels, name="spam")

    trials = search.trials
    random = RandomSearcher(SearchSpace(["glove"]), SEED)
    assert [t.config for t in trials] == [random.suggest(i, "spam", ["glove"]).config for i in range(3)]
    assert {t.task for t in trials} == {"spam"} and all(t.finished for t in trials)

    card = search.export(tmp_path / "model", top_k=2, retrain_seeds=1)
    assert card["task"] == "spam" and card["class_names"] == ["ham", "spam"]
    assert search.class_names == ["ham", "spam"]
    # The API's CSV is split like any CSV: its test rows are the card's test rows.
    written = load_task(card["task_source"])
    predicted = search.predict(list(written.test.texts))
    truth = [written.label_names[i] for i in written.test.labels]
    assert sum(p == t for p, t in zip(predicted, truth)) / len(truth) == card["test_accuracy"]
    assert search.predict_proba(["free prize, call now"]).shape == (1, 2)
