"""``ray_cluster.yaml`` is valid against Ray's own cluster-launcher schema, and names the node types the docs use."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_ray_cluster_yaml_matches_rays_launcher_schema() -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types and "cpu_rollout" in types
    assert types["cpu_rollout"]["min_workers"] == 0  # rollout nodes come and go with the load


def test_a_wrong_key_is_caught_by_the_schema() -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    config["idle_timeout_minute"] = 5  # a typo of idle_timeout_minutes
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as exc:
        assert "idle_timeout_minute" in exc.message
    else:
        raise AssertionError("the schema accepted an unknown top-level key")
