"""`datasets.load_dataset(repo_id)` loads every split of an image output the worker published to
the local Hub test server, as users load any dataset from the Hub: by repo id, default revision,
a fresh cache (in a fresh interpreter, since `datasets` reads HF_ENDPOINT at import)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from roboaug.devstack import synthetic
from roboaug.devstack.hubserver import READ_TOKEN, WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import hub_env, local_hub, local_hub_session  # noqa: F401
from tests.worker.helpers import make_spec, run_worker

LOAD = textwrap.dedent("""
    import json, sys
    import datasets
    dd = datasets.load_dataset(sys.argv[1])
    print(json.dumps({split: [d.num_rows, d[0]["image"].size[0] > 0] for split, d in dd.items()}))
""")


@pytest.mark.parametrize("explicit_files", [False, True], ids=["globs", "explicit-files"])
def test_load_dataset_reads_every_split_from_the_hub(local_hub, tmp_path, explicit_files):
    splits = {"train": 4, "test": 3}
    src = synthetic.make_image_dataset(tmp_path / "src", splits=splits, explicit_files=explicit_files)
    repo_id = f"roboaug-test/image-check-{'explicit' if explicit_files else 'globs'}"
    copies = 2
    res = run_worker(make_spec(src, repo_id, augment_copies=copies, augment_transforms="lighting,noise"),
                     env=hub_env(local_hub, str(tmp_path / "hf_worker"), HF_TOKEN=WRITE_TOKEN,
                                 ROBOAUG_WORKDIR=str(tmp_path / "wd")))
    assert res.returncode == 0, res.stderr[-3000:]
    assert local_hub.store.tags("dataset", repo_id) == {}  # no version tag for a datasets output
    load = subprocess.run([sys.executable, "-c", LOAD, repo_id], capture_output=True, text=True, timeout=300,
                          env=hub_env(local_hub, str(tmp_path / "hf_fresh"), HF_TOKEN=READ_TOKEN))
    assert load.returncode == 0, load.stderr[-3000:]
    got = json.loads(load.stdout.strip().splitlines()[-1])
    assert got == {split: [n * (1 + copies), True] for split, n in splits.items()}
