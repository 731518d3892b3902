"""The real MLflow Python client (MlflowClient) against a running model-ledger.

run.sh starts the server and exports MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN (an ml-admins
token), MODEL_LEDGER_READER_TOKEN (ml-readers) and MODEL_LEDGER_RELEASE_TOKEN
(ml-release-managers). Every test uses its own model names, so the tests share one server.
"""

import os
import uuid
import warnings

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture
def client():
    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_code(excinfo):
    return excinfo.value.error_code


def register(client, name, n, **kwargs):
    client.create_registered_model(name)
    return [
        client.create_model_version(name, f"s3://bucket/{name}/{i}", run_id=f"run{i}", **kwargs)
        for i in range(1, n + 1)
    ]


def test_create_model_and_versions_are_ready(client):
    name = unique("create")
    rm = client.create_registered_model(name, tags={"team": "fraud"}, description="churn")
    assert rm.name == name
    assert rm.description == "churn"
    assert rm.tags == {"team": "fraud"}
    assert rm.creation_timestamp > 1_600_000_000_000

    v1 = client.create_model_version(name, "s3://bucket/a", run_id="abc", tags={"k": "v"},
                                     description="first")
    v2 = client.create_model_version(name, "s3://bucket/b")
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.status == "READY"
    assert v1.current_stage == "None"
    assert v1.run_id == "abc"
    assert v1.tags == {"k": "v"}
    assert v1.description == "first"

    got = client.get_model_version(name, "1")
    assert got.source == "s3://bucket/a"
    assert got.status == "READY"
    assert got.last_updated_timestamp >= got.creation_timestamp


def test_duplicate_and_missing_names(client):
    name = unique("dup")
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as e:
        client.create_registered_model(name)
    assert error_code(e) == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(unique("missing"))
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as e:
        client.get_model_version(name, "7")
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"


def test_transitions_archive_existing_versions_and_latest_versions(client):
    name = unique("stages")
    register(client, name, 3)
    client.transition_model_version_stage(name, "1", "Staging")
    v2 = client.transition_model_version_stage(name, "2", "staging",
                                               archive_existing_versions=True)
    assert v2.current_stage == "Staging"
    assert client.get_model_version(name, "1").current_stage == "Archived"

    latest = client.get_latest_versions(name, stages=["Staging"])
    assert [v.version for v in latest] == ["2"]
    every = {v.current_stage: v.version for v in client.get_latest_versions(name)}
    assert every == {"Staging": "2", "Archived": "1", "None": "3"}
    rm = client.get_registered_model(name)
    assert {v.version for v in rm.latest_versions} == {"1", "2", "3"}

    staged = client.search_model_versions(f"name='{name}' AND current_stage='Staging'")
    assert [v.version for v in staged] == ["2"]

    with pytest.raises(MlflowException) as e:
        client.transition_model_version_stage(name, "3", "Prod")
    assert error_code(e) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as e:
        client.transition_model_version_stage(name, "3", "Archived",
                                              archive_existing_versions=True)
    assert error_code(e) == "INVALID_PARAMETER_VALUE"


def test_aliases(client):
    name = unique("alias")
    register(client, name, 2)
    client.set_registered_model_alias(name, "champion", "2")
    v = client.get_model_version_by_alias(name, "champion")
    assert (v.version, v.aliases) == ("2", ["champion"])
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException) as e:
        client.get_model_version_by_alias(name, "champion")
    assert error_code(e) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as e:
        client.set_registered_model_alias(name, "v3", "1")
    assert error_code(e) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as e:
        client.set_registered_model_alias(name, "other", "9")
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"


def test_tags_on_models_and_versions(client):
    name = unique("tags")
    register(client, name, 1)
    client.set_registered_model_tag(name, "team", "fraud")
    client.set_registered_model_tag(name, "tier", "1")
    client.delete_registered_model_tag(name, "tier")
    client.delete_registered_model_tag(name, "never-set")  # a no-op, as in MLflow
    assert client.get_registered_model(name).tags == {"team": "fraud"}
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.set_model_version_tag(name, "1", "empty", "")
    assert client.get_model_version(name, "1").tags == {"validated": "yes", "empty": ""}
    client.delete_model_version_tag(name, "1", "validated")
    assert client.get_model_version(name, "1").tags == {"empty": ""}

    found = client.search_registered_models(f"tags.team = 'fraud' AND name = '{name}'")
    assert [m.name for m in found] == [name]
    found = client.search_model_versions(f"name = '{name}' AND tags.empty = ''")
    assert [v.version for v in found] == ["1"]


def test_search_filters_and_order(client):
    prefix = unique("srch")
    for suffix in ["a", "b", "C"]:
        client.create_registered_model(f"{prefix}-{suffix}")
    names = [m.name for m in client.search_registered_models(f"name LIKE '{prefix}-%'")]
    assert names == [f"{prefix}-C", f"{prefix}-a", f"{prefix}-b"]
    assert [m.name for m in client.search_registered_models(f"name LIKE '{prefix}-c'")] == []
    names = [m.name for m in client.search_registered_models(f"name ILIKE '{prefix}-c'")]
    assert names == [f"{prefix}-C"]
    names = [m.name for m in client.search_registered_models(
        f"name LIKE '{prefix}-%'", order_by=["name DESC"])]
    assert names == [f"{prefix}-b", f"{prefix}-a", f"{prefix}-C"]
    names = [m.name for m in client.search_registered_models(
        f"name LIKE '{prefix}-%' AND name != '{prefix}-a'")]
    assert names == [f"{prefix}-C", f"{prefix}-b"]

    model = f"{prefix}-a"
    client.create_model_version(model, "s3://x/1", run_id="r1")
    client.create_model_version(model, "s3://x/2", run_id="r2")
    client.create_model_version(model, "s3://x/3", run_id="r3")
    got = client.search_model_versions(f"run_id IN ('r1', 'r3') AND name = '{model}'")
    assert sorted(v.version for v in got) == ["1", "3"]
    got = client.search_model_versions(f"source_path = 's3://x/2' AND name='{model}'")
    assert [v.version for v in got] == ["2"]
    got = client.search_model_versions(f"name='{model}'", order_by=["version_number ASC"])
    assert [v.version for v in got] == ["1", "2", "3"]
    with pytest.raises(MlflowException) as e:
        client.search_registered_models("name = 'a' OR name = 'b'")
    assert error_code(e) == "INVALID_PARAMETER_VALUE"


def test_pagination_over_250_versions(client):
    name = unique("page")
    client.create_registered_model(name)
    for i in range(250):
        client.create_model_version(name, f"s3://bucket/{name}/{i}")
    seen, token, pages = [], None, 0
    while True:
        page = client.search_model_versions(f"name='{name}'", max_results=100,
                                            order_by=["version_number ASC"], page_token=token)
        seen.extend(int(v.version) for v in page)
        pages += 1
        token = page.token
        if not token:
            break
    assert pages == 3
    assert seen == list(range(1, 251))

    prefix = unique("rmpage")
    for i in range(7):
        client.create_registered_model(f"{prefix}-{i}")
    seen, token = [], None
    while True:
        page = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=3,
                                               page_token=token)
        seen.extend(m.name for m in page)
        token = page.token
        if not token:
            break
    assert seen == [f"{prefix}-{i}" for i in range(7)]


def test_update_rename_and_delete(client):
    name = unique("life")
    register(client, name, 2)
    assert client.update_registered_model(name, description="new").description == "new"
    assert client.update_model_version(name, "1", description="d1").description == "d1"
    new_name = unique("renamed")
    client.rename_registered_model(name, new_name)
    assert client.get_registered_model(new_name).name == new_name
    assert client.get_model_version(new_name, "2").name == new_name
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(name)
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"

    client.delete_model_version(new_name, "1")
    with pytest.raises(MlflowException) as e:
        client.get_model_version(new_name, "1")
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"
    # Version numbers are never reused.
    assert client.create_model_version(new_name, "s3://x/again").version == "3"
    client.delete_registered_model(new_name)
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(new_name)
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"


def test_download_uri_and_register_model(client):
    import mlflow

    name = unique("dl")
    client.create_registered_model(name)
    client.create_model_version(name, "s3://bucket/models/dl/1")
    assert client.get_model_version_download_uri(name, "1") == "s3://bucket/models/dl/1"
    # register_model creates the model if needed and carries on past RESOURCE_ALREADY_EXISTS.
    mv = mlflow.register_model("s3://bucket/models/dl/2", name)
    assert mv.version == "2"


def test_policy_denials_are_permission_denied(client, monkeypatch):
    name = unique("policy")
    register(client, name, 1)
    # Admins may not promote to Production (reserved to release managers).
    with pytest.raises(MlflowException) as e:
        client.transition_model_version_stage(name, "1", "Production")
    assert error_code(e) == "PERMISSION_DENIED"
    assert "release managers" in e.value.message

    # Release managers may, but only a verified artifact can reach Production.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", os.environ["MODEL_LEDGER_RELEASE_TOKEN"])
    with pytest.raises(MlflowException) as e:
        client.transition_model_version_stage(name, "1", "Production")
    assert error_code(e) == "PERMISSION_DENIED"
    assert "verified artifact" in e.value.message

    # Readers read, and nothing else.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", os.environ["MODEL_LEDGER_READER_TOKEN"])
    assert client.get_registered_model(name).name == name
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]
    with pytest.raises(MlflowException) as e:
        client.create_registered_model(unique("reader"))
    assert error_code(e) == "PERMISSION_DENIED"
    with pytest.raises(MlflowException) as e:
        client.set_registered_model_tag(name, "k", "v")
    assert error_code(e) == "PERMISSION_DENIED"

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "not-a-token")
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(name)
    assert error_code(e) == "UNAUTHENTICATED"


def test_pyfunc_load_model_by_stage_alias_and_production(client, tmp_path, monkeypatch):
    """A python_function model pushed to model-ledger loads through MLflow's own
    `models:/` resolution: get-download-uri, then the artifact proxy list/download."""
    import subprocess

    import mlflow.pyfunc
    import pandas as pd
    import requests

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["x"] * 2

    path = tmp_path / "model"
    mlflow.pyfunc.save_model(str(path), python_model=Doubler(), pip_requirements=["mlflow"])
    name = unique("pyfunc")
    pushed = subprocess.run(
        [os.environ["MODEL_LEDGER_BIN"], "push", name, str(path), "--no-progress"],
        capture_output=True,
        text=True,
        check=True,
    )
    version = pushed.stdout.strip()
    assert version == "1", pushed.stdout

    client.transition_model_version_stage(name, version, "Staging")
    client.set_registered_model_alias(name, "champion", version)
    frame = pd.DataFrame({"x": [1, 2, 3]})
    for uri in (f"models:/{name}/Staging", f"models:/{name}@champion", f"models:/{name}/{version}"):
        model = mlflow.pyfunc.load_model(uri)
        assert list(model.predict(frame)) == [2, 4, 6], uri

    # Production needs a verified artifact and someone other than the creator.
    url = os.environ["MLFLOW_TRACKING_URI"]
    admin = {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    verified = requests.post(f"{url}/api/v1/models/{name}/versions/{version}/verify", headers=admin, timeout=30)
    assert verified.status_code == 200, verified.text
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", os.environ["MODEL_LEDGER_RELEASE_TOKEN"])
    client.transition_model_version_stage(name, version, "Production", archive_existing_versions=True)
    model = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    assert list(model.predict(frame)) == [2, 4, 6]


# ---- Behaviours MLflow's own registry tests rely on (tests/tracking/test_model_registry.py
# upstream); written here against model-ledger, in our own words. ----


def now_ms():
    import time

    return int(time.time() * 1000)


def within(lo, hi, t):
    assert lo <= t <= hi, (lo, t, hi)


def test_errors_use_mlflow_wording(client):
    name = unique("wording")
    register(client, name, 1)
    with pytest.raises(MlflowException, match=rf"^RESOURCE_ALREADY_EXISTS: Registered Model \(name={name}\) already exists"):
        client.create_registered_model(name)
    other = unique("wording-other")
    client.create_registered_model(other)
    with pytest.raises(MlflowException, match=rf"Registered Model \(name={other}\) already exists"):
        client.rename_registered_model(name, other)
    missing = unique("wording-missing")
    with pytest.raises(MlflowException, match=rf"Registered Model with name={missing} not found"):
        client.get_registered_model(missing)
    with pytest.raises(MlflowException, match=rf"Registered Model with name={missing} not found"):
        client.rename_registered_model(missing, unique("x"))
    with pytest.raises(MlflowException, match=rf"Model Version \(name={name}, version=4\) not found"):
        client.get_model_version(name, "4")
    with pytest.raises(MlflowException, match=rf"Model Version \(name={name}, version=4\) not found"):
        client.update_model_version(name, "4", description="x")
    with pytest.raises(MlflowException, match=rf"Model Version \(name={name}, version=4\) not found"):
        client.transition_model_version_stage(name, "4", "Staging")
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE: Parameter 'version' must be an integer, got 'one'."):
        client.get_model_version(name, "one")


def test_model_timestamp_moves_as_in_mlflow_sql_store(client):
    import time

    name = unique("clock")
    t0 = now_ms()
    client.create_registered_model(name)
    t1 = now_ms()
    rm = client.get_registered_model(name)
    within(t0, t1, rm.creation_timestamp)
    within(t0, t1, rm.last_updated_timestamp)

    def model_updated():
        return client.get_registered_model(name).last_updated_timestamp

    # Creating a version moves the model's clock.
    time.sleep(0.01)
    s = now_ms()
    client.create_model_version(name, "s3://b/1", run_id="r")
    client.create_model_version(name, "s3://b/2", run_id="r")
    within(s, now_ms(), model_updated())

    # A stage change moves both the version's and the model's clock.
    time.sleep(0.01)
    s = now_ms()
    client.transition_model_version_stage(name, "1", "Staging")
    e = now_ms()
    within(s, e, client.get_model_version(name, "1").last_updated_timestamp)
    staged_at = model_updated()
    within(s, e, staged_at)

    # A version's description, tags and aliases, and the model's tags, leave the model's clock.
    time.sleep(0.01)
    s = now_ms()
    client.update_model_version(name, "1", description="new words")
    within(s, now_ms(), client.get_model_version(name, "1").last_updated_timestamp)
    before_tag = client.get_model_version(name, "2").last_updated_timestamp
    client.set_model_version_tag(name, "2", "k", "v")
    client.delete_model_version_tag(name, "2", "k")
    # ... and a version's tags leave the version's clock too.
    assert client.get_model_version(name, "2").last_updated_timestamp == before_tag
    client.set_registered_model_alias(name, "champion", "2")
    client.delete_registered_model_alias(name, "champion")
    client.set_registered_model_tag(name, "team", "a")
    client.delete_registered_model_tag(name, "team")
    assert model_updated() == staged_at

    # The model's own description and deleting a version move it.
    time.sleep(0.01)
    s = now_ms()
    client.update_registered_model(name, description="model words")
    within(s, now_ms(), model_updated())
    time.sleep(0.01)
    s = now_ms()
    client.delete_model_version(name, "2")
    within(s, now_ms(), model_updated())
    assert client.get_registered_model(name).creation_timestamp == rm.creation_timestamp


def test_version_search_operators_as_mlflow(client):
    name = unique("ops")
    client.create_registered_model(name)
    for i in range(1, 6):
        client.create_model_version(name, f"s3://ops/{i}", run_id=f"run-{i % 2}")

    def versions(flt, **kw):
        return sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}' AND {flt}", **kw))

    assert versions("version_number > 3") == [4, 5]
    assert versions("version_number >= 3") == [3, 4, 5]
    assert versions("version_number < 2") == [1]
    assert versions("version_number <= '2'") == [1, 2]
    assert versions("version_number != 3") == [1, 2, 4, 5]
    assert versions("version_number = 3") == [3]
    assert versions("version_number IN ('2', '5')") == [2, 5]
    assert versions("run_id != 'run-1'") == [2, 4]
    assert versions("run_id IN ('run-1')") == [1, 3, 5]
    assert versions("source_path LIKE 's3://ops/%'") == [1, 2, 3, 4, 5]
    assert versions("source_path ILIKE 'S3://OPS/4'") == [4]
    assert versions("source_path IN ('s3://ops/1', 's3://ops/2')") == [1, 2]
    assert sorted(int(v.version) for v in client.search_model_versions(f"name IN ('{name}', 'nope') AND version_number > 4")) == [5]
    with pytest.raises(MlflowException) as e:
        client.search_model_versions(f"name = '{name}' AND version_number LIKE '1'")
    assert error_code(e) == "INVALID_PARAMETER_VALUE"

    # Default order: last updated first; a stage change brings a version to the front.
    client.transition_model_version_stage(name, "2", "Staging")
    got = [v.version for v in client.search_model_versions(f"name = '{name}'")]
    assert got == ["2", "5", "4", "3", "1"]
    # Offsets as page tokens, one version a page, covering everything once.
    seen, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=2,
                                            order_by=["version_number DESC"], page_token=token)
        seen.extend(v.version for v in page)
        token = page.token
        if not token:
            break
    assert seen == ["5", "4", "3", "2", "1"]


def test_strict_request_types_and_body_limit():
    import requests

    url = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow"
    auth = {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    for body in ({"name": 5}, {"name": unique("t"), "tags": "x"}, {"name": unique("t"), "description": ["x"]}):
        r = requests.post(f"{url}/registered-models/create", json=body, headers=auth, timeout=10)
        assert r.status_code == 400, r.text
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = requests.post(f"{url}/model-versions/search", json={"max_results": "abc"}, headers=auth, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    huge = b'{"name": "' + b"a" * (20 * 1024 * 1024) + b'"}'
    r = requests.post(f"{url}/registered-models/create", data=huge, timeout=30,
                      headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error_code"] == "REQUEST_TOO_LARGE"
