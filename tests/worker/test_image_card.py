"""extend_data_files: every data_files form a Hub card allows reaches the augmented files."""

from __future__ import annotations

import pytest

from roboaug.worker.dataset_card import extend_data_files

ADDED = {"data/train-0.parquet": "data/train-0-roboaug.parquet",
         "data/test-0.parquet": "data/test-0-roboaug.parquet"}


def _card(data_files):
    return {"configs": [{"config_name": "default", "data_files": data_files}]}


@pytest.mark.parametrize("data_files, expected", [
    # globs that already match the new files stay as they are
    ("data/*.parquet", "data/*.parquet"),
    ([{"split": "train", "path": "data/train-*"}], [{"split": "train", "path": "data/train-*"}]),
    ("**", "**"),
    # one file by name
    ("data/train-0.parquet", ["data/train-0.parquet", "data/train-0-roboaug.parquet"]),
    (["data/train-0.parquet", "data/test-0.parquet"],
     ["data/train-0.parquet", "data/test-0.parquet", "data/train-0-roboaug.parquet", "data/test-0-roboaug.parquet"]),
    ({"train": "data/train-0.parquet", "test": ["data/test-0.parquet"]},
     {"train": ["data/train-0.parquet", "data/train-0-roboaug.parquet"],
      "test": ["data/test-0.parquet", "data/test-0-roboaug.parquet"]}),
    # a glob that leaves our suffix out: the new file is added by name
    ("data/train-?.parquet", ["data/train-?.parquet", "data/train-0-roboaug.parquet"]),
    # a pattern matching no source file adds nothing; `*` does not cross folders
    ("other/*.parquet", "other/*.parquet"),
    ("*.parquet", "*.parquet"),
    ("./data/test-0.parquet", ["./data/test-0.parquet", "data/test-0-roboaug.parquet"]),
])
def test_data_files_forms(data_files, expected):
    assert extend_data_files(_card(data_files), ADDED)["configs"][0]["data_files"] == expected


def test_cards_without_configs_are_left_alone():
    assert extend_data_files({"license": "mit"}, ADDED) == {"license": "mit"}
    assert extend_data_files({"configs": [{"config_name": "x"}]}, ADDED) == {"configs": [{"config_name": "x"}]}
