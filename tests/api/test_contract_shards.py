"""The sharded-job part of the worker contract: stage and shard count round-trip from the
operator's env to the worker's parser (JOB_COMPLETION_INDEX as Kubernetes sets it), bad values
are refused naming the variable, and the plan line a SHARD_PLAN exit leaves is read back from a
termination message."""
from __future__ import annotations

import pytest

from roboaug.api import joblogs
from roboaug.api.contract import (
    COMPLETION_INDEX,
    SHARDS,
    STAGE,
    ContractError,
    ShardPlan,
    Stage,
    WorkerEnv,
    find_shard_plan,
    plan_line,
    render_env,
    staging_name,
)


def env_of(**kw) -> dict[str, str]:
    rendered = render_env(job_id="j-1", cr_name="aug-x", cr_namespace="ns", hub_token=None, library={}, extra={}, **kw)
    return {e["name"]: e["value"] for e in rendered if "value" in e}


def test_single_stage_renders_nothing_and_parses_as_single():
    env = env_of()
    assert STAGE.name not in env and SHARDS.name not in env
    parsed = WorkerEnv.parse(env)
    assert (parsed.stage, parsed.shards, parsed.shard_index) == (Stage.SINGLE, None, None)
    assert WorkerEnv.parse(env_of(shards=4)).shards == 4  # a single stage with a fixed count
    assert WorkerEnv.parse(env_of(max_shards=6)).max_shards == 6  # the project's cap on its plan
    assert WorkerEnv.parse(env).max_shards is None
    assert WorkerEnv.parse(env_of(frames_per_shard=500)).frames_per_shard == 500  # the pool's threshold
    assert WorkerEnv.parse(env).frames_per_shard is None


def test_shard_stage_round_trips_with_the_index_kubernetes_sets():
    env = env_of(stage=Stage.SHARD, shards=7)
    parsed = WorkerEnv.parse({**env, COMPLETION_INDEX.name: "6"})
    assert (parsed.stage, parsed.shards, parsed.shard_index) == ("shard", 7, 6)
    assert COMPLETION_INDEX.name not in env  # never the operator's to set
    fin = WorkerEnv.parse(env_of(stage=Stage.FINALIZE, shards=7))
    assert (fin.stage, fin.shards, fin.shard_index) == ("finalize", 7, None)


@pytest.mark.parametrize("env, message", [
    ({"ROBOAUG_STAGE": "merge"}, "ROBOAUG_STAGE must be one of single, shard, finalize, cleanup, got 'merge'"),
    ({"ROBOAUG_STAGE": "shard"}, "ROBOAUG_SHARDS is required by ROBOAUG_STAGE=shard"),
    ({"ROBOAUG_STAGE": "finalize"}, "ROBOAUG_SHARDS is required by ROBOAUG_STAGE=finalize"),
    ({"ROBOAUG_SHARDS": "0"}, "ROBOAUG_SHARDS must be an integer 1..10000, got '0'"),
    ({"ROBOAUG_SHARDS": "10001"}, "ROBOAUG_SHARDS must be an integer 1..10000"),
    ({"ROBOAUG_MAX_SHARDS": "0"}, "ROBOAUG_MAX_SHARDS must be an integer 1..10000, got '0'"),
    ({"ROBOAUG_FRAMES_PER_SHARD": "1e5"}, "ROBOAUG_FRAMES_PER_SHARD must be an integer >= 1, got '1e5'"),
    ({"ROBOAUG_STAGE": "shard", "ROBOAUG_SHARDS": "2"}, "JOB_COMPLETION_INDEX must be an integer 0..1"),
    ({"ROBOAUG_STAGE": "shard", "ROBOAUG_SHARDS": "2", "JOB_COMPLETION_INDEX": "2"}, "JOB_COMPLETION_INDEX must be an integer 0..1"),
])
def test_bad_values_are_refused_naming_the_variable(env, message):
    with pytest.raises(ContractError, match=message.replace("(", r"\(").replace(".", r"\.")):
        WorkerEnv.parse(env)


def test_the_operator_cannot_render_a_bad_stage():
    with pytest.raises(ContractError, match="ROBOAUG_STAGE must be one of"):
        env_of(stage="merge")
    with pytest.raises(ContractError, match="ROBOAUG_SHARDS is required by stage 'shard'"):
        env_of(stage=Stage.SHARD)
    with pytest.raises(ContractError, match="ROBOAUG_SHARDS must be an integer 1..10000"):
        env_of(shards=0)


def test_the_plan_line_is_found_in_a_termination_message():
    msg, fields = plan_line(ShardPlan(shards=5, units=40, frames=1_000_000))
    line = joblogs.render("info", msg, **fields)
    tail = "\n".join(['{"ts": "x", "level": "info", "msg": "augmenting"}', line, ""])
    assert find_shard_plan(tail) == ShardPlan(5, 40, 1_000_000)
    # the msg alone (a plain line, e.g. a log cut to its message) carries it too
    assert find_shard_plan("prefix " + msg) == ShardPlan(5, 40, 1_000_000)
    assert find_shard_plan('{"ts": "x", "level": "info", "msg": "done"}') is None
    assert find_shard_plan(None) is None
    assert find_shard_plan(msg.replace('"shards": 5', '"shards": 0')) is None


def test_staging_name():
    assert staging_name("abc") == "roboaug-staging-abc"
