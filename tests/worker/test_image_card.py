"""The card's `configs` after augmentation: every data_files form a Hub card allows resolves to
the files `datasets` loads, in its order, and is rewritten as explicit lists (originals first)."""

from __future__ import annotations

import pytest

from roboaug.worker.dataset_card import config_splits, infer_splits, with_data_files, with_split_sizes

FILES = ["data/test-0.parquet", "data/train-0.parquet", "data/train-1.parquet"]


def _card(data_files):
    return {"configs": [{"config_name": "default", "data_files": data_files}]}


@pytest.mark.parametrize("data_files, expected", [
    ("data/*.parquet", {"train": FILES}),
    ([{"split": "train", "path": "data/train-*"}], {"train": ["data/train-0.parquet", "data/train-1.parquet"]}),
    ("**", {"train": FILES}),
    ("data/train-0.parquet", {"train": ["data/train-0.parquet"]}),
    (["data/train-1.parquet", "data/test-0.parquet"], {"train": ["data/train-1.parquet", "data/test-0.parquet"]}),
    ({"train": "data/train-?.parquet", "test": ["./data/test-0.parquet"]},
     {"train": ["data/train-0.parquet", "data/train-1.parquet"], "test": ["data/test-0.parquet"]}),
    ("other/*.parquet", {"train": []}),
    ("*.parquet", {"train": []}),  # `*` does not cross folders
])
def test_data_files_forms_resolve_in_load_order(data_files, expected):
    assert config_splits(_card(data_files), FILES) == {"default": expected}


def test_cards_without_configs_get_datasets_split_inference():
    assert config_splits({"license": "mit"}, ["data/train-00000-of-00002.parquet", "data/test-00000-of-00001.parquet",
                                              "data/train-00001-of-00002.parquet"]) == {"default": {
        "train": ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"],
        "test": ["data/test-00000-of-00001.parquet"]}}
    assert infer_splits(["a/valid/x.parquet", "b.parquet", "test.parquet"]) == {
        "validation": ["a/valid/x.parquet"], "train": ["b.parquet"], "test": ["test.parquet"]}


def test_explicit_lists_and_true_sizes_are_written():
    card = {"dataset_info": {"splits": [{"name": "train", "num_bytes": 1, "num_examples": 2}]},
            "configs": [{"config_name": "default", "data_files": "data/*"}]}
    out = with_split_sizes(with_data_files(card, {"default": {"train": ["a", "a.roboaug"]}}),
                           {"default": {"train": (6, 600, 50)}})
    assert out["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": ["a", "a.roboaug"]}]}]
    assert out["dataset_info"] == {"splits": [{"name": "train", "num_bytes": 600, "num_examples": 6}],
                                   "download_size": 50, "dataset_size": 600}
