"""The Kubernetes deployment in deploy/: the instance loads with Dagster's own loader, the Helm
values say the same, and the pools are the ones the assets declare."""

import re
import tomllib
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml
from dagster_k8s import K8sRunLauncher

from lead_scoring_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = yaml.safe_load((ROOT / "dagster.yaml").read_text())
INSTANCE = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
VALUES = yaml.safe_load((ROOT / "deploy" / "values.yaml").read_text())
RUN_RETRIES = {
    "enabled": "enabled",
    "max_retries": "maxRetries",
    "retry_on_asset_or_op_failure": "retryOnAssetOrOpFailure",
}
"""Every run-retry setting of a Dagster instance, and its key under the Helm chart's
``dagsterDaemon.runRetries``."""


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: test, user: {token: test}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""


def declared_pools() -> set[str]:
    graph = defs().resolve_asset_graph()
    return {
        node.assets_def.node_def.pool
        for node in graph.asset_nodes
        if node.assets_def.is_executable and node.assets_def.node_def.pool
    }


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def snake_keys(value):
    if isinstance(value, dict):
        return {
            snake(k) if k != "applyLimitPerUniqueValue" else k: snake_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


def test_the_instance_loads_with_dagsters_loader(postgres_url, tmp_path, monkeypatch):
    """deploy/dagster.yaml as Dagster loads it: storage on a real PostgreSQL database, the
    Kubernetes run launcher (kube config from a file instead of the cluster's, never
    contacted), the queue and the pools."""
    url = sa.make_url(postgres_url)
    for name, value in {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
        "DAGSTER_K8S_JOB_NAMESPACE": "scoring",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
        "DAGSTER_HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    config["run_launcher"]["config"].update(
        load_incluster_config=False, kubeconfig_file=str(tmp_path / "kubeconfig")
    )
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))

    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == "scoring"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert (
            instance.run_retries_enabled,
            instance.run_retries_max_retries,
            instance.run_retries_retry_on_asset_or_op_failure,
        ) == tuple(VALUES["dagsterDaemon"]["runRetries"][key] for key in RUN_RETRIES.values())
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 2
        for pool in declared_pools():
            instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
            assert instance.event_log_storage.get_concurrency_info(pool).slot_count == 2
    finally:
        instance.dispose()


def test_the_pools_are_the_ones_the_assets_declare():
    pools = declared_pools()
    assert pools == {"lead_scoring_postgres"}
    for text in (
        (ROOT / "deploy" / "dagster.yaml").read_text(),
        (ROOT / "deploy" / "values.yaml").read_text(),
    ):
        named = set(re.findall(r"\bpool (\w+)", text))
        assert named == pools


def test_the_helm_values_match_the_instance():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert snake_keys(VALUES["concurrency"]) == INSTANCE["concurrency"]
    daemon = VALUES["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert [s["name"] for s in launcher["envSecrets"]] == INSTANCE["run_launcher"]["config"][
        "env_secrets"
    ]
    assert launcher["resources"] == INSTANCE["run_launcher"]["config"]["resources"]


def test_one_run_retry_policy_in_every_instance():
    """dagster.yaml, deploy/dagster.yaml and the Helm values each set every run-retry setting
    explicitly (a setting left out takes Dagster's default, which may differ), to the same
    values."""
    helm = VALUES["dagsterDaemon"]["runRetries"]
    assert set(PRODUCTION["run_retries"]) == set(RUN_RETRIES)
    assert set(INSTANCE["run_retries"]) == set(RUN_RETRIES)
    assert set(helm) == set(RUN_RETRIES.values())
    for key, helm_key in RUN_RETRIES.items():
        assert PRODUCTION["run_retries"][key] == INSTANCE["run_retries"][key] == helm[helm_key], key


def test_the_code_location_serves_this_project_from_a_pinned_image():
    module = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert deployment["image"]["tag"] not in ("", "latest")
    assert [s["name"] for s in deployment["envSecrets"]] == INSTANCE["run_launcher"]["config"][
        "env_secrets"
    ]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f'"-m", "{module}"' in dockerfile and f'"{deployment["port"]}"' in dockerfile


def test_no_credential_in_the_deployment_files():
    assert VALUES["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in VALUES["postgresql"]
    for path in (ROOT / "deploy").iterdir():
        text = path.read_text()
        assert not re.search(
            r"(password|token|secret_key)[ \t]*[:=][ \t]*[\"']?\w", text, re.IGNORECASE
        ), path.name


def test_the_code_location_splits_bucket_backfills_as_the_values_say(monkeypatch):
    """The code location's environment in the Helm values sets how many contact buckets a
    backfill run takes; the rescoring's assets load with that backfill policy."""
    (location,) = VALUES["dagster-user-deployments"]["deployments"]
    env = {item["name"]: item["value"] for item in location["env"]}
    monkeypatch.setenv("LEAD_SCORING_BUCKETS_PER_RUN", env["LEAD_SCORING_BUCKETS_PER_RUN"])
    from lead_scoring_assets.defs.partitions import bucket_backfill_policy

    policy = bucket_backfill_policy()
    assert policy.max_partitions_per_run == int(env["LEAD_SCORING_BUCKETS_PER_RUN"]) == 4
