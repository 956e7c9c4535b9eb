"""The Helm chart (deploy/helm/noetl), validated offline: lint, render with each example values file,
validate every manifest against Kubernetes 1.30's schemas, check what the chart promises (non-root
pods, no inbound traffic to workers, a migration hook, one autoscaled Deployment per pool), run the
KEDA queue query against a real database, and keep the Dockerfile and compose file in step.

Helm is the embedded one of ``helm-python-sdk``; ``kubernetes-validate`` holds the schemas (KEDA's
ScaledObject is a custom resource it has no schema for: its fields are checked here instead).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from noetl.store import migrate

helm_python = pytest.importorskip("helm_python", reason="pip install 'noetl[deploy]' (the test extra has it)")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/noetl"
EXAMPLES = sorted((CHART / "examples").glob("values-*.yaml"))


def render(values_file: Path) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    values = yaml.safe_load(values_file.read_text())
    out = chart.render(values=values, name="prod", namespace="noetl", is_install=True)
    return [
        doc
        for name, text in sorted(out.items())
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return found


def test_the_chart_lints_clean() -> None:
    values = yaml.safe_load((CHART / "examples/values-test.yaml").read_text())
    report = helm_python.lint(str(CHART), values=values, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values_file", EXAMPLES, ids=lambda p: p.stem)
def test_every_manifest_validates_against_kubernetes(values_file: Path, tmp_path: Path) -> None:
    docs = render(values_file)
    files = []
    for n, doc in enumerate(d for d in docs if d["apiVersion"] != "keda.sh/v1alpha1"):
        path = tmp_path / f"{n:02d}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", "1.30.0", "--strict", "--quiet", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for scaled in of_kind(docs, "ScaledObject"):
        trigger = scaled["spec"]["triggers"][0]
        assert (
            trigger["type"] == "postgresql"
            and trigger["metadata"]["connectionFromEnv"] == "NOETL_DATABASE_URL"
        )
        assert scaled["spec"]["scaleTargetRef"]["name"] in {
            d["metadata"]["name"] for d in of_kind(docs, "Deployment")
        }


def test_what_the_default_deployment_promises() -> None:
    docs = render(CHART / "examples/values-test.yaml")
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert set(deployments) == {"prod-noetl-server", "prod-noetl-gateway", "prod-noetl-worker-default"}
    for name in ("prod-noetl-server", "prod-noetl-gateway"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    (worker,) = containers(deployments["prod-noetl-worker-default"])
    assert worker["securityContext"]["capabilities"]["add"] == ["SETUID", "SETGID", "CHOWN", "FOWNER", "KILL"]
    assert worker["args"][-2:] == ["--task-user", "noetl-task"] and "ports" not in worker
    # Workers: no Service, and a policy that lets nothing in.
    assert all("worker" not in s["metadata"]["name"] for s in of_kind(docs, "Service"))
    (workers_policy,) = [
        p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("workers")
    ]
    assert workers_policy["spec"]["ingress"] == [] and workers_policy["spec"]["policyTypes"] == ["Ingress"]
    (job,) = of_kind(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert containers(job)[0]["args"] == ["db", "migrate"]
    assert {p["metadata"]["name"] for p in of_kind(docs, "PodDisruptionBudget")} == set(deployments)
    (secret,) = of_kind(docs, "Secret")
    assert set(secret["stringData"]) == {"database-url", "encryption-key", "service-token"}


def test_a_gpu_pool_lands_on_gpu_nodes_with_its_capacity() -> None:
    docs = render(CHART / "examples/values-gpu.yaml")
    (gpu,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "prod-noetl-worker-gpu"]
    pod = gpu["spec"]["template"]["spec"]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu" and pod["nodeSelector"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = container["args"]
    assert args[args.index("--pool") + 1] == "gpu" and args[args.index("--resources") + 1] == "gpu=1"
    (scaled,) = [s for s in of_kind(docs, "ScaledObject") if s["metadata"]["name"] == "prod-noetl-worker-gpu"]
    assert (
        scaled["spec"]["minReplicaCount"] == 0
        and scaled["spec"]["triggers"][0]["metadata"]["targetQueryValue"] == "1"
    )
    assert of_kind(docs, "Ingress")[0]["spec"]["tls"]


def test_an_external_secret_and_no_keda() -> None:
    docs = render(CHART / "examples/values-external-secrets.yaml")
    assert of_kind(docs, "Secret") == [] and of_kind(docs, "ScaledObject") == []
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "prod-noetl-worker-default"
    for deployment in of_kind(docs, "Deployment"):
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in containers(deployment)[0]["env"]
            if "valueFrom" in e
        }
        assert refs == {"noetl-prod"}


def test_the_keda_query_counts_a_pools_runnable_and_running_commands(pg_database: str) -> None:
    import asyncio

    asyncio.run(migrate.apply(pg_database))
    docs = render(CHART / "examples/values-gpu.yaml")
    queries = {
        s["metadata"]["name"].rsplit("-", 1)[-1]: s["spec"]["triggers"][0]["metadata"]["query"]
        for s in of_kind(docs, "ScaledObject")
    }
    rows = [  # (pool, status, seconds until available)
        ("gpu", "ready", 0),
        ("gpu", "ready", 0),
        ("gpu", "leased", 0),
        ("gpu", "ready", 3600),
        ("gpu", "done", 0),
        ("gpu", "cancelled", 0),
        ("default", "ready", 0),
    ]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        for n, (pool, status, delay) in enumerate(rows):
            conn.execute(
                "INSERT INTO noetl.command (command_id, execution_id, step, pool, status, available_at)"
                " VALUES (%s, 1, 's', %s, %s, now() + make_interval(secs => %s))",
                (f"1:{n}", pool, status, delay),
            )
        counts = {pool: conn.execute(query).fetchone()[0] for pool, query in queries.items()}
    # a retry waiting its backoff (available in an hour) is not work for a new replica yet
    assert counts == {"gpu": 3, "default": 1}


def test_the_dockerfile_and_compose_file_match_the_chart() -> None:
    docs = render(CHART / "examples/values-test.yaml")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in of_kind(docs, "Deployment")
    }
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())["services"]
    for service in ("server", "gateway", "worker"):
        chart_args = containers(deployments[service])[0]["args"]
        command = compose[service]["command"]
        assert command[:2] == chart_args[:2], service
        assert _flags(command) == _flags(chart_args), service
    secret_env = {e["name"] for e in containers(deployments["server"])[0]["env"] if "valueFrom" in e}
    assert secret_env <= set(compose["server"]["environment"])
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    uid = values["podSecurityContext"]["runAsUser"]
    assert f"USER {uid}" in dockerfile and f"--uid {uid}" in dockerfile
    assert re.search(rf"useradd .*{values['worker']['taskUser']}\b", dockerfile)
    assert compose["worker"]["command"][-1] == values["worker"]["taskUser"]


def _flags(args: list[str]) -> set[str]:
    return {a for a in args if a.startswith("--")}
