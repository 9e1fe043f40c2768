"""Image tasks: folders, archives, .npz, splits, the decode cache and every bad input, on real
photos cut from the shared flowers set and real MNIST digits."""
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import HANG_GUARD_S

from automl_transfer import images, tasks
from automl_transfer.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("daisy", "rose", "tulip")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Decoded arrays go to this test's folder, never to the user's cache."""
    monkeypatch.setenv("AUTOML_TRANSFER_CACHE_DIR", str(tmp_path / "cache"))


def write_photo_folder(data_dir: Path, destination: Path, per_class: int = 4,
                       classes: tuple[str, ...] = CLASSES) -> Path:
    """`destination/<class>/*.jpg`: the first `per_class` real flowers photos of each class."""
    wanted = {c: per_class for c in classes}
    with tarfile.open(data_dir / "images" / "flowers5-128px" / "flowers5_128px.tar.gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and wanted.get(parts[1], 0) > 0:
                wanted[parts[1]] -= 1
                (destination / parts[1]).mkdir(parents=True, exist_ok=True)
                (destination / parts[1] / parts[2]).write_bytes(archive.extractfile(member).read())
            if not any(wanted.values()):
                break
    return destination


def write_digit_pngs(data_dir: Path, destination: Path, digits=(0, 1), per_class: int = 3) -> Path:
    """`destination/<digit>/*.png`: real grayscale MNIST digits as PNG files."""
    from PIL import Image
    with np.load(data_dir / "images" / "mnist-test10k" / "mnist_t10k.npz") as data:
        x, y = data["x"], data["y"]
    for digit in digits:
        (destination / str(digit)).mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(y == digit)[:per_class]):
            Image.fromarray(x[i], mode="L").save(destination / str(digit) / f"{k}.png")
    return destination


def _all_pixels(task: tasks.Task) -> np.ndarray:
    return np.concatenate([task.train.images, task.valid.images, task.test.images])


def test_folder_task_loads_photos_as_rgb_with_80_10_10_split(shared_data_dir, tmp_path):
    folder = write_photo_folder(shared_data_dir, tmp_path / "photos")
    task = tasks.load_task(str(folder))
    assert (task.name, task.modality, task.label_names) == ("photos", "image", CLASSES)
    assert (len(task.train), len(task.valid), len(task.test)) == (10, 1, 1)
    assert task.train.images.shape[1:] == (128, 128, 3) and task.train.images.dtype == np.uint8
    labels = np.concatenate([task.train.labels, task.valid.labels, task.test.labels])
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    other = tasks.load_task(str(folder), seed=1)
    assert not np.array_equal(other.test.images, task.test.images)


def test_archive_gives_the_same_task_as_the_folder(shared_data_dir, tmp_path):
    folder = write_photo_folder(shared_data_dir, tmp_path / "src" / "photos")
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="photos")  # a wrapping folder, as in the shared archives
    from_dir, from_tar = tasks.load_task(str(folder)), tasks.load_task(str(archive))
    assert from_tar.name == "photos" and from_tar.label_names == from_dir.label_names
    assert np.array_equal(_all_pixels(from_tar), _all_pixels(from_dir))


def test_grayscale_pngs_become_three_equal_channels(shared_data_dir, tmp_path):
    task = tasks.load_task(str(write_digit_pngs(shared_data_dir, tmp_path / "digits", per_class=5)))
    pixels = _all_pixels(task)
    assert pixels.shape[1:] == (28, 28, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 2]) and pixels.max() > 200


def test_train_test_folders_are_kept_and_valid_is_carved(shared_data_dir, tmp_path):
    write_photo_folder(shared_data_dir, tmp_path / "set" / "train", per_class=10, classes=CLASSES[:2])
    write_photo_folder(shared_data_dir, tmp_path / "set" / "test", per_class=2, classes=CLASSES[:2])
    task = tasks.load_task(str(tmp_path / "set"))
    assert (len(task.train), len(task.valid), len(task.test)) == (18, 2, 4)
    assert task.label_names == CLASSES[:2]


def test_mixed_sizes_are_resized_and_decoding_is_cached(shared_data_dir, tmp_path):
    folder = write_photo_folder(shared_data_dir, tmp_path / "mixed", classes=CLASSES[:2])
    write_digit_pngs(shared_data_dir, folder, digits=(7,))
    task = tasks.load_task(str(folder))
    assert _all_pixels(task).shape[1:] == (images.MIXED_SIZE, images.MIXED_SIZE, 3)
    written = (task.cache_dir / "meta.json").stat().st_mtime_ns
    tasks._load_images_cached.cache_clear()
    again = tasks.load_task(str(folder))  # read back from the cache, not written again
    assert again is not task and np.array_equal(_all_pixels(again), _all_pixels(task))
    assert (again.cache_dir / "meta.json").stat().st_mtime_ns == written
    tasks._load_images_cached.cache_clear()
    copy = shutil.copytree(folder, tmp_path / "elsewhere" / "mixed")  # new path and mtimes, same bytes
    for member in copy.rglob("*"):
        os.utime(member, ns=(member.stat().st_atime_ns, member.stat().st_mtime_ns + 10**12))
    copied = tasks.load_task(str(copy))  # the decoded images are reused, not decoded again
    assert copied.cache_dir == task.cache_dir and (copied.cache_dir / "meta.json").stat().st_mtime_ns == written
    tasks._load_images_cached.cache_clear()
    broken = sorted(folder.rglob("*.jpg"))[0]
    broken.write_bytes(b"")  # an edited photo makes the cache stale: decoded again, and refused
    with pytest.raises(DataError, match="unreadable or truncated"):
        tasks.load_task(str(folder))


def test_resized_copy_is_made_once_per_size(shared_data_dir, tmp_path):
    task = tasks.load_task(str(write_photo_folder(shared_data_dir, tmp_path / "p")))
    lines = []
    small = images.resized(task.train.images, task.cache_dir, "train", 32, log=lines.append)
    assert small.shape == (10, 32, 32, 3) and len(lines) == 1
    assert np.array_equal(images.resized(task.train.images, task.cache_dir, "train", 32, log=lines.append), small)
    assert len(lines) == 1
    assert abs(float(small.mean()) - float(task.train.images.mean())) < 5


def test_registered_image_tasks(shared_data_dir):
    registered = {n: i for n, i in tasks.registry().items() if i.modality == "image"}
    assert set(registered) == {"cifar10", "mnist", "flowers"}
    mnist = tasks.load_task("mnist", shared_data_dir)
    caps = dict(registered["mnist"].max_rows)  # a seeded subset of the 8,000 / 1,000 / 1,000 split
    assert (len(mnist.train), len(mnist.valid), len(mnist.test)) == (caps["train"], caps["valid"], caps["test"])
    assert mnist.num_classes == registered["mnist"].num_classes == 10
    assert mnist.train.images.shape[1:] == (28, 28, 3)


def _bad_inputs(data_dir: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (task path, what its error line must say)."""
    empty_class = write_photo_folder(data_dir, root / "empty_class", classes=CLASSES[:2])
    (empty_class / "tulip").mkdir()
    one_class = write_photo_folder(data_dir, root / "one_class", classes=CLASSES[:1])
    truncated = write_photo_folder(data_dir, root / "truncated", per_class=5, classes=CLASSES[:2])
    victim = sorted((truncated / "rose").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:300])
    no_images = root / "no_images" / "daisy"
    no_images.mkdir(parents=True)
    (no_images / "notes.txt").write_text("not an image")
    return {"empty class folder": (empty_class, f"{empty_class / 'tulip'}: empty class folder"),
            "one class": (one_class, "only one class ('daisy')"),
            "truncated image": (truncated, f"{victim}: unreadable or truncated image"),
            "no images": (root / "no_images", "no images")}


def test_bad_image_folders_raise_one_line_naming_the_problem(shared_data_dir, tmp_path):
    for name, (path, message) in _bad_inputs(shared_data_dir, tmp_path).items():
        with pytest.raises(DataError) as caught:
            tasks.load_task(str(path))
        assert message in str(caught.value) and "\n" not in str(caught.value), name


def test_bad_image_inputs_exit_2_with_one_line_from_the_cli(shared_data_dir, tmp_path):
    bad = _bad_inputs(shared_data_dir, tmp_path)
    archive = tmp_path / "truncated.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bad["truncated image"][0], arcname="truncated")
    cases = list(bad.values()) + [(archive, f"{archive}:truncated/rose/")]
    for path, message in cases:
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "run_experiment.py"), "--mode=random", f"--tasks={path}",
             "--trials=1", f"--experiment_dir={tmp_path / 'exp'}"],
            capture_output=True, text=True, timeout=HANG_GUARD_S,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr


def test_npz_with_wrong_arrays_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 5), np.float32), y=np.zeros(4))
    with pytest.raises(DataError, match="expected x uint8"):
        tasks.load_task(str(bad))
