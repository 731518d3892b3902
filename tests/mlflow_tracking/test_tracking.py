"""The everyday MLflow workflow with MLFLOW_TRACKING_URI set to model-ledger only, a real
`mlflow server` behind it as --mlflow-upstream.

run.sh exports MLFLOW_TRACKING_URI (model-ledger), MLFLOW_TRACKING_TOKEN (ml-admins),
MODEL_LEDGER_{READER,RELEASE,CI}_TOKEN and MODEL_LEDGER_UPSTREAM_URL (the MLflow server, used
only to check what was forwarded). Tests marked `upstream_down` run after run.sh has stopped
the MLflow server.
"""

import json
import os
import pathlib
import subprocess
import uuid
import warnings

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

warnings.filterwarnings("ignore")

URL = os.environ["MLFLOW_TRACKING_URI"]
ADMIN = os.environ["MLFLOW_TRACKING_TOKEN"]
READER = os.environ["MODEL_LEDGER_READER_TOKEN"]
RELEASE = os.environ["MODEL_LEDGER_RELEASE_TOKEN"]


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def curl(method, path, token, body=None, raw_path=False):
    """(status, parsed JSON or text) of one call, with curl as a CI script would make it."""
    args = ["curl", "-sS", "-X", method, "-H", f"Authorization: Bearer {token}",
            "-w", "\n%{http_code}"]
    if raw_path:
        args.append("--path-as-is")
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    out = subprocess.run(args + [URL + path], check=True, capture_output=True, text=True).stdout
    text, _, code = out.rpartition("\n")
    try:
        return int(code), json.loads(text)
    except json.JSONDecodeError:
        return int(code), text


def as_user(token):
    """An MlflowClient that calls model-ledger with another caller's token."""
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    return MlflowClient(tracking_uri=URL)


@pytest.fixture(autouse=True)
def admin_by_default():
    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN
    yield
    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN


def train(experiment):
    """A training script: logs a scikit-learn model with signature, input example and f1."""
    mlflow.set_tracking_uri(URL)
    mlflow.set_experiment(experiment)
    X, y = load_iris(return_X_y=True, as_frame=True)
    with mlflow.start_run() as run:
        model = LogisticRegression(max_iter=300).fit(X, y)
        f1 = float(f1_score(y, model.predict(X), average="macro"))
        mlflow.log_param("max_iter", 300)
        mlflow.log_metric("f1", f1)
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(3),
        )
    return run.info.run_id, f1, X


def version_metrics(name, version):
    status, body = curl("GET", f"/api/v1/models/{name}/versions/{version}", ADMIN)
    assert status == 200, body
    return body.get("metrics") or body.get("version", {}).get("metrics")


def version_created_event(name, version):
    status, body = curl("GET", f"/api/v1/models/{name}/history", ADMIN)
    assert status == 200, body
    events = body["events"] if isinstance(body, dict) else body
    created = [e for e in events if e["event_type"] == "VersionCreated"
               and e["payload"]["version"] == int(version)]
    assert created, events
    return created[0]["payload"]


STATE_DIR = pathlib.Path(os.environ["MODEL_LEDGER_STATE_DIR"])


@pytest.fixture(scope="module")
def trained():
    run_id, f1, X = train(unique("tracking-e2e"))
    # The upstream-down phase registers this run while the upstream is stopped.
    (STATE_DIR / "trained_run_id").write_text(run_id)
    return run_id, f1, X


def test_runs_are_logged_through_model_ledger(trained):
    run_id, f1, _ = trained
    run = MlflowClient(tracking_uri=URL).get_run(run_id)
    assert run.data.metrics["f1"] == pytest.approx(f1)
    assert run.data.params["max_iter"] == "300"
    # The run really lives on the upstream.
    out = subprocess.run(
        ["curl", "-fsS", f"{os.environ['MODEL_LEDGER_UPSTREAM_URL']}/api/2.0/mlflow/runs/get?run_id={run_id}"],
        check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["run"]["info"]["run_id"] == run_id


def test_quality_gate_on_evidence_then_load_by_stage_and_alias(trained):
    run_id, f1, X = trained
    name = unique("gated")
    client = MlflowClient(tracking_uri=URL)
    client.create_registered_model(name)
    # What MLflow 3's register_model sends: models:/m-… with model_id.
    mv = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert mv.version == "1"
    assert mv.run_id == run_id
    payload = version_created_event(name, 1)
    evidence = payload["run_evidence"]
    assert evidence["status"] == "captured"
    assert evidence["metrics"]["f1"] == pytest.approx(f1)
    assert evidence["params"]["max_iter"] == "300"
    assert evidence["resolved_source"].startswith("mlflow-artifacts:/")
    assert payload["metrics"]["f1"] == pytest.approx(f1)
    # Run pinning (#16): the run's files were hashed at registration; verifying them is what
    # the shipped production-requires-verified-artifact rule asks for.
    assert evidence["pin"] == "pinned"
    assert payload["artifact"]["files"], payload
    status, verified = curl("POST", f"/api/v1/models/{name}/versions/1/verify", ADMIN)
    assert status == 200 and verified["verified"] is True, verified

    client.transition_model_version_stage(name, "1", "Staging")
    client.set_registered_model_tag(name, "gate.f1", str(round(f1 + 0.5, 4)))
    release = as_user(RELEASE)
    with pytest.raises(MlflowException) as denied:
        release.transition_model_version_stage(name, "1", "Production")
    assert denied.value.error_code == "PERMISSION_DENIED"
    assert "quality gate" in str(denied.value)

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN
    client.set_registered_model_tag(name, "gate.f1", str(round(f1 - 0.1, 4)))
    promoted = as_user(RELEASE).transition_model_version_stage(name, "1", "Production")
    assert promoted.current_stage == "Production"

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN
    client.set_registered_model_alias(name, "champion", "1")
    for uri in (f"models:/{name}/Production", f"models:/{name}@champion"):
        loaded = mlflow.pyfunc.load_model(uri)
        predictions = loaded.predict(X.head(5))
        assert len(predictions) == 5
        assert set(np.asarray(predictions).tolist()) <= {0, 1, 2}


def test_tampering_in_the_upstream_store_is_named_and_blocks_production():
    """Someone with write access to the tracking server's artifact store changes a pinned file."""
    run_id, _, _ = train(unique("tamper"))
    name = unique("tampered")
    client = MlflowClient(tracking_uri=URL)
    client.create_registered_model(name)
    mlflow.register_model(f"runs:/{run_id}/model", name)
    evidence = version_created_event(name, 1)["run_evidence"]
    assert evidence["pin"] == "pinned"
    status, verified = curl("POST", f"/api/v1/models/{name}/versions/1/verify", ADMIN)
    assert status == 200 and verified["verified"] is True, verified
    client.transition_model_version_stage(name, "1", "Staging")

    # The upstream serves mlflow-artifacts:/<path> from its --artifacts-destination directory.
    relative = evidence["resolved_source"].removeprefix("mlflow-artifacts:").lstrip("/")
    root = pathlib.Path(os.environ["MODEL_LEDGER_UPSTREAM_ARTIFACTS"]) / relative
    # The serialized estimator (model.skops in MLflow 3.17, model.pkl in older lines).
    weights = sorted(p for p in root.glob("model.*") if p.is_file())
    assert weights, sorted(str(p) for p in root.rglob("*"))
    target = weights[0]
    target.write_bytes(target.read_bytes() + b"tampered")
    changed = target.relative_to(root).as_posix()

    status, report = curl("POST", f"/api/v1/models/{name}/versions/1/verify", ADMIN)
    assert report["verified"] is False, report
    assert changed in [f["path"] for f in report["failures"]], report
    with pytest.raises(MlflowException) as denied:
        as_user(RELEASE).transition_model_version_stage(name, "1", "Production")
    assert denied.value.error_code == "PERMISSION_DENIED"
    assert "verified" in str(denied.value)
    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN
    # The download through model-ledger's proxy is checked against the pins while it streams.
    with pytest.raises(Exception):
        mlflow.pyfunc.load_model(f"models:/{name}/1")


def test_old_style_runs_source_without_model_id_resolves_to_the_logged_model(trained):
    run_id, f1, X = trained
    name = unique("oldstyle")
    client = MlflowClient(tracking_uri=URL)
    client.create_registered_model(name)
    # What older scripts do; MLflow 3.17 itself answers "Could not find MLmodel" here.
    mv = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    assert mv.source == f"runs:/{run_id}/model"
    evidence = version_created_event(name, mv.version)["run_evidence"]
    assert evidence["logged_model_id"].startswith("m-")
    assert "/models/" in evidence["resolved_source"]
    # Pinned (#16): downloads go through model-ledger's proxy, checked against the pins.
    assert evidence["pin"] == "pinned"
    uri = client.get_model_version_download_uri(name, mv.version)
    assert "/mlflow-artifacts/artifacts/models/" in uri, uri
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    assert len(loaded.predict(X.head(2))) == 2


def test_ci_rest_check_against_model_ledger_url(trained):
    run_id, f1, _ = trained
    name = unique("ci-check")
    client = MlflowClient(tracking_uri=URL)
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.transition_model_version_stage(name, "1", "Staging")
    # The CI script: find the Staging version, then read its run's metric, all via one URL.
    status, found = curl("POST", "/api/2.0/mlflow/model-versions/search", READER,
                         {"filter": f"name='{name}' AND current_stage='Staging'"})
    assert status == 200, found
    [version] = found["model_versions"]
    status, run = curl("GET", f"/api/2.0/mlflow/runs/get?run_id={version['run_id']}", READER)
    assert status == 200, run
    metrics = {m["key"]: m["value"] for m in run["run"]["data"]["metrics"]}
    assert metrics["f1"] == pytest.approx(f1)


def test_tracking_calls_are_authenticated_and_authorized():
    status, body = curl("GET", "/api/2.0/mlflow/experiments/search?max_results=5", "not-a-token")
    assert status == 401 and body["error_code"] == "UNAUTHENTICATED"
    status, body = curl("POST", "/api/2.0/mlflow/runs/search", READER, {"experiment_ids": ["0"]})
    assert status == 200, body
    status, body = curl("POST", "/api/2.0/mlflow/experiments/create", READER, {"name": unique("x")})
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED"
    status, body = curl("POST", "/api/2.0/mlflow/experiments/create",
                        os.environ["MODEL_LEDGER_CI_TOKEN"], {"name": unique("ci-exp")})
    assert status == 200 and body["experiment_id"], body


def test_traversal_is_refused_before_the_upstream():
    for path in ("/api/2.0/mlflow-artifacts/artifacts/%2e%2e/%2e%2e/etc/passwd",
                 "/api/2.0/mlflow-artifacts/artifacts/0/..%2f..%2fetc",
                 "/api/2.0/mlflow-artifacts/artifacts?path=../../etc"):
        status, body = curl("GET", path, ADMIN, raw_path=True)
        assert status == 400, (path, body)
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"


def test_unknown_run_is_refused_at_registration():
    name = unique("norun")
    client = MlflowClient(tracking_uri=URL)
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as refused:
        client.create_model_version(name, "runs:/0123456789abcdef0123456789abcdef/model",
                                    run_id="0123456789abcdef0123456789abcdef")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "does not exist" in str(refused.value)


@pytest.mark.upstream_down
def test_upstream_down_registry_keeps_working_tracking_says_so():
    name = unique("down")
    client = MlflowClient(tracking_uri=URL)
    client.create_registered_model(name)
    mv = client.create_model_version(name, "runs:/abcdef0123/model", run_id="abcdef0123")
    assert mv.status == "READY"
    evidence = version_created_event(name, mv.version)["run_evidence"]
    assert evidence["status"] == "unavailable" and evidence["error"]
    assert client.get_registered_model(name).name == name
    status, body = curl("POST", "/api/2.0/mlflow/runs/search", ADMIN, {"experiment_ids": ["0"]})
    assert status in (502, 503), body
    assert body["error_code"] in ("TEMPORARILY_UNAVAILABLE", "BAD_GATEWAY")
    assert "upstream" in body["message"]


@pytest.mark.upstream_down
def test_registered_while_the_upstream_is_down_is_pending_and_kept_from_production():
    run_id = (STATE_DIR / "trained_run_id").read_text()
    name = unique("pending")
    client = MlflowClient(tracking_uri=URL)
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    evidence = version_created_event(name, mv.version)["run_evidence"]
    assert evidence["pin"] == "pending", evidence
    client.transition_model_version_stage(name, mv.version, "Staging")
    with pytest.raises(MlflowException) as denied:
        as_user(RELEASE).transition_model_version_stage(name, mv.version, "Production")
    assert denied.value.error_code == "PERMISSION_DENIED"
    (STATE_DIR / "pending_model").write_text(name)


@pytest.mark.upstream_back
def test_the_pending_version_pins_itself_once_the_upstream_is_back_then_reaches_production():
    name = (STATE_DIR / "pending_model").read_text()
    # The background pinner retries with backoff; verify pins a pending version at once.
    status, report = curl("POST", f"/api/v1/models/{name}/versions/1/verify", ADMIN)
    assert status == 200 and report["verified"] is True, report
    status, version = curl("GET", f"/api/v1/models/{name}/versions/1", ADMIN)
    assert version["artifact"]["files"], version
    promoted = as_user(RELEASE).transition_model_version_stage(name, "1", "Production")
    assert promoted.current_stage == "Production"
    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN
    X, _ = load_iris(return_X_y=True, as_frame=True)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    assert len(loaded.predict(X.head(3))) == 3
