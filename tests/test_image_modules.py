"""Image modules converted from the real TF-Lite MobileNet, and the image child on real photos.

The tiny module is the real MobileNet v1 0.25 converted as built, only exported at 32 px (the
convolutions do not depend on the input size), so tests stay fast.
"""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from automl_transfer import tasks
from automl_transfer.child import image_features
from automl_transfer.child.evaluate import TaskRef, evaluate, trained_child
from automl_transfer.errors import ModuleError, UserError
from automl_transfer.export import export_model
from automl_transfer.modules import image_build, image_convert, registry
from automl_transfer.modules.loading import load_module
from automl_transfer.search import SearchOptions, run_search, summary
from automl_transfer.search_space import Config
from automl_transfer.trial import Status, Trial, TrialResult
from test_images import write_photo_folder

TFLITE = "images/pretrained-cnn/mobilenet_v1_0.25_128_quant.tflite"
RECIPE = {"source": "tflite", "arch": "mobilenet_v1", "alpha": 0.25, "input_size": 32,
          "preprocessing": "slim", "files": [TFLITE]}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOML_TRANSFER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_module(shared_data_dir, tmp_path_factory):
    """(handle, manifest fields) of the real MobileNet v1 0.25 exported at 32 px."""
    directory = tmp_path_factory.mktemp("modules") / "mobilenet_v1_025_32"
    spec = registry.ModuleSpec("mobilenet_v1_025", str(directory), "image", "none", 256, "test")
    details = image_build.export(directory, spec, RECIPE, shared_data_dir)
    return str(directory), details


def test_conversion_reproduces_the_tflite_model(shared_data_dir, tmp_path):
    path = shared_data_dir / TFLITE
    net = image_convert.read_tflite(path)
    assert len(net.convs) == 28 and net.convs[-1].kernel.shape == (1, 1, 256, 1001)
    model, head_kernel, head_bias = image_convert.mobilenet_from_tflite("mobilenet_v1", 0.25, 128, [path])
    first = [layer for layer in model.layers if layer.name == "conv1"][0]
    np.testing.assert_allclose(first.kernel.numpy(), net.convs[0].kernel)
    photos = tasks.load_task(str(write_photo_folder(shared_data_dir, tmp_path / "p", per_class=4))).train.images
    interpreter = tf.lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    feature = next(t for t in interpreter.get_tensor_details()
                   if t["name"] == "MobilenetV1/Logits/AvgPool_1a/AvgPool")
    lite_features, lite_top = [], []
    for image in photos:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        scale, zero = feature["quantization"]
        lite_features.append((interpreter.get_tensor(feature["index"]).reshape(-1) - zero) * scale)
        lite_top.append(np.argmax(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]))
    ours = model(photos.astype(np.float32) * (2 / 256) - 1, training=False).numpy()
    lite_features = np.array(lite_features)
    cosine = np.sum(ours * lite_features, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(lite_features, axis=1)
    assert cosine.min() > 0.95
    agree = np.mean(np.argmax(ours @ head_kernel + head_bias, 1) == np.array(lite_top))
    assert agree >= 0.6, agree  # 0.95 on 60 photos per set (docs/modules.md); 10 photos here


def test_exported_module_is_a_tf_hub_image_feature_vector(tiny_module, shared_data_dir):
    handle, details = tiny_module
    assert (details["input_size"], details["dim"], details["preprocessing"]) == (32, 256, "slim")
    module = hub.load(handle)
    assert int(module.input_size.numpy()) == image_features.input_size(module, handle) == 32
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    features = module(tf.constant(images)).numpy()
    assert features.shape == (2, 256) and np.isfinite(features).all() and features.std() > 0
    head = np.load(f"{handle}/{image_build.HEAD_FILE}")
    assert head["kernel"].shape == (256, 1001)
    assert len(module.trainable_variables) > 0


def test_missing_weights_are_one_line_module_errors(tmp_path):
    spec = registry.ModuleSpec("x", str(tmp_path / "x"), "image", "none", 256, "test")
    with pytest.raises(ModuleError, match="pre-trained weights not found"):
        image_build.export(tmp_path / "x", spec, RECIPE, tmp_path)


def test_registry_lists_image_modules_in_both_profiles():
    offline = {n: s for n, s in registry.load_registry("offline").items() if s.modality == "image"}
    assert len(offline) >= 5 and all(r["source"] in image_build.SOURCES for n, r in
                                      registry.build_recipes("offline").items() if n in offline)
    paper = {n for n, s in registry.load_registry("paper").items() if s.modality == "image"}
    assert paper == {"mobilenet_v1_100_224", "inception_v2", "inception_v3", "resnet_v1_50", "resnet_v1_101"}


def test_pixel_bags_bin_low_resolution_pixels():
    images = np.zeros((2, 16, 16, 3), np.uint8)
    images[1] = 255
    vocab, bags = image_features.pixel_bags({"train": images})
    values, splits = bags["train"]
    per_image = image_features.WIDE_SIDE ** 2 * 3
    assert len(vocab) == per_image * image_features.WIDE_BINS
    assert splits.tolist() == [0, per_image, 2 * per_image]
    assert np.all(values[:per_image] % image_features.WIDE_BINS == 0)  # black: lowest bin
    assert np.all(values[per_image:] % image_features.WIDE_BINS == image_features.WIDE_BINS - 1)


def _config(**changes) -> Config:
    values = dict(module="tiny", fine_tune=False, num_layers=1, layer_size=16, activation="relu",
                  normalization="none", dropout=0.0, deep_learning_rate=0.1, deep_l2=0.0,
                  wide_learning_rate=0.1, wide_l1="disable", train_samples=1000)
    return Config(**{**values, **changes})


def test_image_child_trains_on_cached_frozen_features(tiny_module, shared_data_dir, tmp_path):
    handle, _ = tiny_module
    folder = write_photo_folder(shared_data_dir, tmp_path / "photos", per_class=10)
    task = TaskRef(str(folder))
    result = evaluate(_config(), task, {"tiny": handle}, seed=0)
    assert result.status == Status.COMPLETED and result.steps == 10
    cached = list((tasks.load_task(str(folder)).cache_dir / "features").glob("*.npz"))
    assert len(cached) == 1 and np.load(cached[0])["train"].shape == (24, 256)
    again = evaluate(_config(), task, {"tiny": handle}, seed=0)
    assert (again.valid_accuracy, again.test_accuracy) == (result.valid_accuracy, result.test_accuracy)
    tuned = evaluate(_config(fine_tune=True), task, {"tiny": handle}, seed=0)
    assert (tuned.status, tuned.valid_accuracy, tuned.test_accuracy) == (
        result.status, result.valid_accuracy, result.test_accuracy)  # documented: frozen path
    wide = evaluate(_config(deep_l2="disable", wide_l1=0.0), task, {"tiny": handle}, seed=0)
    assert wide.status == Status.COMPLETED and wide.steps == 10


def test_logs_say_a_fine_tune_choice_trains_an_image_module_frozen():
    """The run's summary line names what was trained, not the decision's label."""
    assert not registry.trains_when_fine_tuned("mobilenet_v1_025")
    assert registry.trains_when_fine_tuned("en-glove-50") and registry.trains_when_fine_tuned("mine")
    trials = [Trial(trial_id=0, task=task, config=_config(module=module, fine_tune=True), seed=0,
                    searcher="random", result=TrialResult(Status.COMPLETED, 0.5, 0.5))
              for task, module in (("flowers", "mobilenet_v1_025"), ("subj", "en-glove-50"))]
    flowers, subj = [line for line in summary(trials, ["flowers", "subj"]) if "best (" in line]
    assert "module=mobilenet_v1_025 (frozen; image modules fine-tune only with --fine_tune_images)" in flowers
    assert "module=en-glove-50 (fine-tuned)" in subj
    assert registry.trains_when_fine_tuned("mobilenet_v1_025", fine_tune_images=True)
    flowers = [line for line in summary(trials, ["flowers"], fine_tune_images=True) if "best (" in line][0]
    assert "module=mobilenet_v1_025 (fine-tuned)" in flowers


def test_fine_tune_images_trains_the_cnn_on_the_photos_and_gives_its_weights_back(
        tiny_module, shared_data_dir, tmp_path):
    """--fine_tune_images: the fine_tune decision trains the module's own weights on batches of
    the task's images (read from their memory map), and the shared module is restored after."""
    handle, _ = tiny_module
    task = TaskRef(str(write_photo_folder(shared_data_dir, tmp_path / "photos", per_class=10)))
    config = _config(fine_tune=True, deep_learning_rate=0.01)
    with trained_child(config, task, {"tiny": handle}, 0) as (frozen_child, frozen):
        assert not frozen_child.tune_module
        frozen_logits = frozen_child.logits("valid")
    module = load_module(handle)  # memoised: the very module the trials use
    before = [v.numpy() for v in module.trainable_variables]
    with trained_child(config, task, {"tiny": handle}, 0, fine_tune_images=True) as (child, tuned):
        assert tuned.status == Status.COMPLETED and tuned.steps == 10
        assert child.tune_module and len(child.deep_vars) > len(frozen_child.deep_vars)
        moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, module.trainable_variables)]
        assert sum(moved) > len(moved) // 2  # the convolutions trained, not only the head
        tuned_logits = child.logits("valid")
    assert tuned_logits.shape == frozen_logits.shape and not np.allclose(tuned_logits, frozen_logits)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, module.trainable_variables))
    untouched = evaluate(_config(fine_tune=False), task, {"tiny": handle}, 0, fine_tune_images=True)
    assert untouched.valid_accuracy == evaluate(_config(fine_tune=False), task, {"tiny": handle}, 0).valid_accuracy


def test_an_image_run_resumes_only_with_its_fine_tune_images_and_is_not_exported(tiny_module, shared_data_dir, tmp_path):
    handle, _ = tiny_module
    folder = write_photo_folder(shared_data_dir, tmp_path / "photos", per_class=10)
    options = SearchOptions(mode="random", tasks=[str(folder)], trials=1, seed=0,
                            experiment_dir=str(tmp_path / "run"), data_dir=str(shared_data_dir),
                            module_handles=[f"mobilenet_v1_025={handle}"], tensorboard=False,
                            max_in_flight=1)
    (trial,) = run_search(options, log=lambda _: None)
    assert trial.result.status == Status.COMPLETED
    with pytest.raises(UserError, match="fine_tune_images"):
        run_search(SearchOptions(**{**vars(options), "trials": 2, "fine_tune_images": True}))
    with pytest.raises(UserError, match="is an image task; export writes text classifiers"):
        export_model(tmp_path / "run", tmp_path / "model")  # refused before any re-training
    assert not (tmp_path / "model").exists()
