"""The synthetic LeRobot writer's meta/tasks.parquet reads back as LeRobot reads it.

LeRobot loads tasks with pandas and looks each up by the frame's index (the task string); a file
without pandas' index metadata reads every task as its row number, and lerobot's add_frame then
records the task "0" (found by bench_vs_lerobot).
"""
import pandas as pd

from roboaug.devstack.synthetic import make_lerobot


def test_tasks_parquet_is_indexed_by_the_task_string(tmp_path):
    tasks = ("push the T into place", "stack the cubes")
    root = make_lerobot(tmp_path / "ds", lengths=(3, 3, 3), tasks=tasks)
    df = pd.read_parquet(root / "meta/tasks.parquet")
    assert df.index.tolist() == list(tasks)
    assert df["task_index"].tolist() == [0, 1]
    assert df.loc["stack the cubes", "task_index"] == 1
