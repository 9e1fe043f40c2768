"""Embedding modules: real SavedModels built from real tables and corpora, loaded via hub.load."""
from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from automl_transfer.errors import ModuleError, UserError
from automl_transfer.modules import build, corpora, registry, word2vec
from automl_transfer.modules.loading import MANIFEST, get_module, load_module
from automl_transfer.modules.pretrained import load_pretrained_table, normalise_vocabulary
from automl_transfer.modules.text_embedding import export_text_module
from automl_transfer.text import tokenize

GLOVE = "embeddings/glove-6b-50d-top50k"
WORD2VEC = "embeddings/word2vec-googlenews-300d-subset13k"


def numpy_mean(text: str, vocab: list[str], table: np.ndarray) -> np.ndarray:
    """What a module must return for `text`: mean of the known tokens' rows, zeros if none."""
    index = {w: i for i, w in enumerate(vocab)}
    rows = [index[t] for t in tokenize(text) if t in index]
    return table[rows].mean(axis=0) if rows else np.zeros(table.shape[1], np.float32)


@pytest.fixture(scope="module")
def glove_module(shared_data_dir, tmp_path_factory):
    """A real module of the 300 most frequent GloVe words, loaded through hub.load."""
    vocab, table = load_pretrained_table(shared_data_dir / GLOVE)
    vocab, table = vocab[:300], table[:300]
    directory = export_text_module(str(tmp_path_factory.mktemp("glove300") / "m"), vocab, table)
    return load_module(directory), vocab, table


@pytest.fixture(scope="module")
def spanish_module(shared_data_dir, tmp_path_factory):
    """A tiny skip-gram module trained on 2,000 real Don Quijote paragraphs."""
    sentences = corpora.quijote_sentences(shared_data_dir / corpora.QUIJOTE)[:2000]
    vocab, table = word2vec.train_table(sentences, "skipgram", 16, 1, 2, 3)
    directory = export_text_module(str(tmp_path_factory.mktemp("es") / "m"), vocab, table)
    return load_module(directory), vocab, table


def test_module_output_is_numpy_mean_of_known_rows(glove_module):
    module, vocab, table = glove_module
    texts = ["The city of New York", "the zzqxunknownzz , of", ""]
    out = module(tf.constant(texts)).numpy()
    assert out.shape == (3, 50)
    np.testing.assert_allclose(out[0], table[[vocab.index(w) for w in
                                              ("the", "city", "of", "new", "york")]].mean(0),
                               rtol=1e-5, atol=1e-6)
    # The unknown token is skipped, not averaged in as zeros.
    np.testing.assert_allclose(out[1], table[[vocab.index("the"), vocab.index("of")]].mean(0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros(50, np.float32))
    ids = module.token_ids(tf.constant(["the", "zzqxunknownzz"])).numpy()
    assert ids.tolist() == [vocab.index("the"), -1]


def test_python_tokenize_and_module_agree_on_real_spanish(shared_data_dir, spanish_module):
    module, vocab, table = spanish_module
    raw = (shared_data_dir / corpora.QUIJOTE).read_text(encoding="utf-8-sig").splitlines()
    accented = [line for line in raw[2000:] if re.search(r"[áéíóúñ¿¡]", line)][:30]
    assert len(accented) == 30
    out = module(tf.constant(accented)).numpy()
    expected = np.stack([numpy_mean(t, vocab, table) for t in accented])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(np.abs(expected).sum(1)) == 30  # the sentences did hit the vocabulary


def test_keras_model_fine_tunes_loaded_embeddings(glove_module):
    module, vocab, _ = glove_module

    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = keras.layers.Dense(2)

        def call(self, texts):
            return self.head(module(texts))

    model = Classifier()
    texts, labels = tf.constant(["a good day", "a new year"]), tf.constant([1, 0])
    model(texts)
    before = module.embeddings.numpy().copy()
    variables = model.trainable_variables + [module.embeddings]
    optimizer = keras.optimizers.Adagrad(0.5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, model(texts), from_logits=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    after = module.embeddings.numpy()
    changed = np.flatnonzero(np.abs(after - before).sum(1))
    assert sorted(changed) == sorted(vocab.index(w) for w in ("a", "good", "day", "new", "year"))
    module.embeddings.assign(before)  # the fixture is shared


def test_both_profiles_parse(tmp_path):
    offline = registry.load_registry("offline", tmp_path)
    text = {n: s for n, s in offline.items() if s.modality == "text"}
    assert len(text) == 8 and len(offline) == 14  # and 6 image modules (tests/test_image_modules.py)
    assert sum(s.language == "es" for s in text.values()) >= 2
    assert list(offline) == registry.module_names("offline")
    for name, spec in offline.items():
        assert spec.handle.startswith(str(tmp_path.resolve() / "modules" / name))
    assert set(registry.build_recipes("offline")) == set(offline)
    paper = registry.load_registry("paper")
    assert {"nnlm-en-dim50", "nnlm-es-dim128", "Wiki-words-500"} <= set(paper)
    assert all(registry.is_remote(s.handle) for s in paper.values())
    with pytest.raises(UserError, match="unknown module profile 'nope'"):
        registry.load_registry("nope")


def test_unknown_module_name_lists_known(tmp_path):
    with pytest.raises(ModuleError, match=r"unknown module 'en-nope'.*known modules: en-glove-50"):
        get_module("en-nope", cache_dir=tmp_path)


def test_unbuilt_module_says_how_to_build(tmp_path):
    with pytest.raises(ModuleError, match="not built yet.*automl_transfer.modules.build "
                                          "--modules es-cbow-128"):
        get_module("es-cbow-128", cache_dir=tmp_path)


def test_broken_module_directories(tmp_path):
    with pytest.raises(ModuleError, match="does not exist"):
        load_module(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModuleError, match="no saved_model.pb"):
        load_module(str(tmp_path / "empty"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"\x08\x01garbage, not a protobuf")
    with pytest.raises(ModuleError, match=f"cannot load module {corrupt}") as err:
        load_module(str(corrupt))
    assert "\n" not in str(err.value)


def test_build_then_reuse_from_manifest(shared_data_dir, tmp_path):
    logs = []
    first = build.build_offline_modules(shared_data_dir, tmp_path, ["en-glove-50"], log=logs.append)
    target = tmp_path / "modules" / "en-glove-50"
    on_disk = json.loads((target / MANIFEST).read_text())
    assert first == [on_disk] and on_disk["dim"] == 50 and on_disk["vocab_size"] > 40000
    stamp = (target / "saved_model.pb").stat().st_mtime_ns
    build.ensure_offline_modules(shared_data_dir, tmp_path, ["en-glove-50"], log=logs.append)
    assert "reused" in logs[-1] and (target / "saved_model.pb").stat().st_mtime_ns == stamp
    built = [p.name for p in (tmp_path / "modules").iterdir() if p.name != build.LOCK_FILE.rsplit("/", 1)[-1]]
    assert built == ["en-glove-50"]  # no temp dirs
    module = get_module("en-glove-50", cache_dir=tmp_path)
    assert module(tf.constant(["king"])).shape == (1, 50)
    # A build by older code, or from another recipe, is stale: it is rebuilt, not reused.
    for field, value in (("build_format", build.BUILD_FORMAT - 1), ("recipe", {"source": "x"})):
        (target / MANIFEST).write_text(json.dumps({**on_disk, field: value}))
        build.ensure_offline_modules(shared_data_dir, tmp_path, ["en-glove-50"], log=logs.append)
        assert "rebuilding" in logs[-3] and "built in" in logs[-1]
        assert json.loads((target / MANIFEST).read_text())[field] == on_disk[field]
    # A directory without its manifest is an unfinished build: it is rebuilt.
    (target / MANIFEST).unlink()
    build.build_offline_modules(shared_data_dir, tmp_path, ["en-glove-50"], log=logs.append)
    assert "built in" in logs[-1] and (target / MANIFEST).is_file()
    with pytest.raises(ModuleError, match="unknown offline module 'bogus'"):
        build.build_offline_modules(shared_data_dir, tmp_path, ["bogus"])


def test_word2vec_vocabulary_follows_our_normalisation(shared_data_dir):
    words = (shared_data_dir / WORD2VEC / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    kept = dict((token, row) for row, token in normalise_vocabulary(words))
    assert all(tokenize(t) == [t] for t in kept)
    assert words[kept["africa"]] in ("Africa", "africa")
    assert words[kept["actress"]] == "actress"  # the lower-case word beats "ACTRESS", "Actress"
    assert "crown_prince" in words and "crown_prince" not in kept and "th" not in kept


def test_spanish_corpus_has_no_gutenberg_boilerplate(shared_data_dir):
    sentences = corpora.quijote_sentences(shared_data_dir / corpora.QUIJOTE)
    words = {w for s in sentences for w in s}
    assert "gutenberg" not in words and "quijote" in words and "señor" in words
