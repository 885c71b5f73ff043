"""Operator configuration and pool selection, without a cluster."""
import pytest

from roboaug.operator.config import ConfigError, load_config, parse_config
from roboaug.operator.pools import NoPoolError, select_pool


def test_defaults_match_architecture_pools():
    cfg = parse_config({})
    cpu = select_pool(cfg, "deterministic")
    gpu = select_pool(cfg, "generative")
    assert (cpu.name, cpu.pool.instance_type, cpu.pool.node_selector) == (
        "cpu", "c7i.4xlarge", {"roboaug.dev/pool": "cpu"})
    assert cpu.pool.gpus == 0
    assert (gpu.name, gpu.pool.instance_type, gpu.pool.node_selector) == (
        "gpu", "g6e.2xlarge", {"roboaug.dev/pool": "gpu"})
    assert gpu.pool.gpus == 1
    assert [t.key for t in gpu.pool.tolerations] == ["nvidia.com/gpu"]
    assert cfg.backoff_limit == 3 and cfg.pending_timeout_seconds == 600


def test_routing_can_point_a_type_at_another_pool():
    cfg = parse_config({"pools": {"local": {"node_selector": {"kubernetes.io/hostname": "local-0"}}},
                        "routing": {"deterministic": "local"}})
    assert select_pool(cfg, "deterministic").name == "local"
    # routing is replaced as a whole, so generative now has no pool: a clear error
    with pytest.raises(NoPoolError, match="routing.generative"):
        select_pool(cfg, "generative")


def test_unknown_augmentation_type():
    with pytest.raises(NoPoolError, match="'diffusion' is not one of"):
        select_pool(parse_config({}), "diffusion")


@pytest.mark.parametrize("data, where", [
    ({"routing": {"deterministic": "nope"}}, "pool 'nope' is not defined"),
    ({"pools": {"cpu": {"imagee": "x"}}}, "pools.cpu.imagee"),
    ({"backoff_limit": -1}, "backoff_limit"),
    ({"worker_env": {"HF_TOKEN": "x"}}, "worker_env: 'HF_TOKEN' is set by the operator"),
    ({"worker_env": {"1BAD": "x"}}, "not a valid environment variable name"),
    ({"pools": {"cpu": {"image_pull_policy": "Sometimes"}}}, "pools.cpu.image_pull_policy"),
    ({"leader_election": {"lease_duration_seconds": 2, "renew_period_seconds": 5}}, "renew_period_seconds"),
    # a leader that cannot renew must stop before its Lease ends, and after a renewal had a chance
    ({"leader_election": {"renew_deadline_seconds": 15}}, "renew_deadline_seconds (15) must be above"),
    ({"leader_election": {"renew_deadline_seconds": 4}}, "renew_deadline_seconds (4) must be above"),
    ({"api_timeout_seconds": 15}, "api_timeout_seconds (15) must be below leader_election.lease_duration_seconds"),
    ({"max_evictions": -1}, "max_evictions"),
    ({"pools": {"cpu": {"active_deadline_seconds": 0}}}, "pools.cpu.active_deadline_seconds"),
])
def test_bad_config_names_the_field(data, where):
    with pytest.raises(ConfigError, match="invalid operator configuration") as e:
        parse_config(data)
    assert where in str(e.value)


def test_load_config_from_file_and_env(tmp_path, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_text("backoff_limit: 1\npools:\n  cpu:\n    resources:\n      requests: {cpu: 2}\n"
                 "routing: {deterministic: cpu}\n")
    monkeypatch.setenv("ROBOAUG_OPERATOR_CONFIG", str(f))
    cfg = load_config()
    assert cfg.backoff_limit == 1
    assert cfg.pools["cpu"].resources.requests == {"cpu": "2"}  # quantities as strings
    assert "gpu" not in cfg.pools  # a values file replaces the pools map
    # ...and a routing that still names the dropped pool is refused at start-up
    f.write_text("pools:\n  cpu: {}\n")
    with pytest.raises(ConfigError, match="routing.generative: pool 'gpu' is not defined in pools"):
        load_config()


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_leader_timing_defaults_stop_a_leader_inside_its_lease():
    le = parse_config({}).leader_election
    assert (le.renew_period_seconds, le.renew_deadline, le.lease_duration_seconds) == (5, 10, 15)  # as client-go
    assert parse_config({}).api_timeout_seconds < le.lease_duration_seconds
    # the derived deadline follows a shorter lease (the tests' 4 s / 1 s)
    assert parse_config({"leader_election": {"lease_duration_seconds": 4, "renew_period_seconds": 1},
                         "api_timeout_seconds": 3}).leader_election.renew_deadline == 2.5
    # without leader election there is no lease to outlive
    assert parse_config({"leader_election": {"enabled": False}, "api_timeout_seconds": 60}).api_timeout_seconds == 60


def test_every_built_in_pool_has_a_deadline_and_a_pool_may_set_its_own():
    from roboaug.operator.jobs import render_job
    from roboaug.api.models import AugmentationJobSpec

    cfg = parse_config({})
    assert cfg.max_evictions == 3
    assert {n: p.active_deadline_seconds for n, p in cfg.pools.items()} == {"cpu": 43200, "gpu": 86400}
    cr = {"metadata": {"name": "aug-x", "namespace": "ns", "uid": "u"}}
    spec = AugmentationJobSpec.model_validate({"project_id": "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0",
                                               "dataset_id": "lerobot/pusht"})

    def deadline(c, kind="deterministic"):
        return render_job(cr, spec, "j", c, select_pool(c, kind))["spec"].get("activeDeadlineSeconds")

    assert (deadline(cfg), deadline(cfg, "generative")) == (43200, 86400)
    own = {"pools": {"cpu": {"active_deadline_seconds": 600}, "gpu": {}}}
    assert deadline(parse_config(own)) == 600
    # a pool without one takes the top-level value; neither: no deadline
    assert deadline(parse_config({**own, "pools": {"cpu": {}, "gpu": {}}, "active_deadline_seconds": 900})) == 900
    assert deadline(parse_config({**own, "pools": {"cpu": {}, "gpu": {}}})) is None
