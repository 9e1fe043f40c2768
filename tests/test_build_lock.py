"""Module builds into one cache take turns: two processes building at once build each module once.

The test holds the cache's build lock itself until both builders say they are waiting for it, so
the two always contend (no timing involved); then it lets them go.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from cli_helpers import HANG_GUARD_S

from automl_transfer.modules import build

REPO_ROOT = Path(__file__).resolve().parent.parent
ROWS = 300


def _tiny_glove(shared_data_dir: Path, data_dir: Path) -> None:
    """The en-glove-50 recipe's source table, cut to its first ROWS real rows."""
    source = shared_data_dir / "embeddings" / "glove-6b-50d-top50k"
    target = data_dir / "embeddings" / "glove-6b-50d-top50k"
    target.mkdir(parents=True)
    words = (source / "vocab.txt").read_text(encoding="utf-8").splitlines()[:ROWS]
    (target / "vocab.txt").write_text("\n".join(words), encoding="utf-8")
    np.save(target / "vectors.npy", np.load(source / "vectors.npy")[:ROWS])


def test_two_processes_building_at_once_build_each_module_once(shared_data_dir, tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _tiny_glove(shared_data_dir, data)
    command = [sys.executable, "-u", "-m", "automl_transfer.modules.build", f"--data_dir={data}",
               f"--cache_dir={cache}", "--modules=en-glove-50"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    outputs = ["", ""]
    with build.build_lock(cache, log=lambda line: None):
        builders = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env) for _ in range(2)]
        for i, builder in enumerate(builders):  # each says it waits before we release the lock
            for line in builder.stdout:
                outputs[i] += line
                if line.startswith("waiting for another process building modules"):
                    break
            assert "waiting for another process" in outputs[i], outputs[i]
    for i, builder in enumerate(builders):
        rest, _ = builder.communicate(timeout=HANG_GUARD_S)
        outputs[i] += rest
        assert builder.returncode == 0, outputs[i]
    assert sum("en-glove-50: building (pretrained)" in out for out in outputs) == 1, outputs
    assert sum("en-glove-50: already built" in out for out in outputs) == 1, outputs
    module = cache / "modules" / "en-glove-50"
    assert build.read_manifest(module)["vocab_size"] > 0
    assert sorted(p.name for p in module.parent.iterdir()) == [".build.lock", "en-glove-50"]
