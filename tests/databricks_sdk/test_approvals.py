"""The Databricks SDK for Python, unchanged, against model-ledger's approval workflow.

CI asks for a stage with `transition_requests/create`, a release manager lists and approves or
rejects, the requester deletes (cancels) its own request, and comments are created, updated and
deleted, all through `WorkspaceClient(host=..., token=...).model_registry`. Models and versions
are set up through model-ledger's native API.
"""

import os
import uuid

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.ml import ActivityType

URL = os.environ["MODEL_LEDGER_URL"]


def client(env):
    return WorkspaceClient(host=URL, token=os.environ[env], auth_type="pat")


def native(method, path, env, body=None):
    r = requests.request(
        method,
        f"{URL}/api/v1{path}",
        headers={"Authorization": f"Bearer {os.environ[env]}"},
        json=body,
        timeout=30,
    )
    return r


@pytest.fixture
def version():
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    r = native("POST", "/models", "MODEL_LEDGER_ADMIN_TOKEN", {"name": name})
    assert r.status_code == 201, r.text
    r = native(
        "POST", f"/models/{name}/versions", "MODEL_LEDGER_CI_TOKEN", {"source": f"s3://b/{name}"}
    )
    assert r.status_code == 201, r.text
    return name, str(r.json()["version"])


def stage_of(name, version):
    r = native("GET", f"/models/{name}/versions/{version}", "MODEL_LEDGER_ADMIN_TOKEN")
    assert r.status_code == 200, r.text
    return r.json()["stage"]


def test_request_list_and_approve(version):
    name, v = version
    ci = client("MODEL_LEDGER_CI_TOKEN").model_registry
    rm = client("MODEL_LEDGER_RELEASE_TOKEN").model_registry
    created = ci.create_transition_request(name=name, version=v, stage="Staging", comment="ready")
    assert created.request.to_stage == "Staging"
    assert created.request.user_id == "sdk-ci"
    listed = rm.list_transition_requests(name=name, version=v)
    assert len(listed) == 1
    assert listed[0].activity_type == ActivityType.REQUESTED_TRANSITION
    assert listed[0].comment == "ready"
    approved = rm.approve_transition_request(
        name=name, version=v, stage="Staging", archive_existing_versions=False, comment="ok"
    )
    assert approved.activity.activity_type == ActivityType.APPROVED_REQUEST
    assert approved.activity.user_id == "sdk-rita"
    assert approved.activity.to_stage == "Staging"
    assert stage_of(name, v) == "Staging"
    assert rm.list_transition_requests(name=name, version=v) == []


def test_self_approval_and_reader_are_refused(version):
    name, v = version
    ci = client("MODEL_LEDGER_CI_TOKEN").model_registry
    ci.create_transition_request(name=name, version=v, stage="Staging")
    with pytest.raises(DatabricksError):
        ci.approve_transition_request(
            name=name, version=v, stage="Staging", archive_existing_versions=False
        )
    with pytest.raises(DatabricksError):
        client("MODEL_LEDGER_READER_TOKEN").model_registry.approve_transition_request(
            name=name, version=v, stage="Staging", archive_existing_versions=False
        )
    with pytest.raises(DatabricksError):
        ci.create_transition_request(name=name, version=v, stage="Staging")
    assert stage_of(name, v) == "None"


def test_reject(version):
    name, v = version
    client("MODEL_LEDGER_CI_TOKEN").model_registry.create_transition_request(
        name=name, version=v, stage="Staging"
    )
    rejected = client("MODEL_LEDGER_RELEASE_TOKEN").model_registry.reject_transition_request(
        name=name, version=v, stage="Staging", comment="metrics too low"
    )
    assert rejected.activity.activity_type == ActivityType.REJECTED_REQUEST
    assert rejected.activity.comment == "metrics too low"
    assert stage_of(name, v) == "None"


def test_delete_cancels_own_request(version):
    name, v = version
    ci = client("MODEL_LEDGER_CI_TOKEN").model_registry
    ci.create_transition_request(name=name, version=v, stage="Staging")
    deleted = ci.delete_transition_request(name=name, version=v, stage="Staging", creator="sdk-ci")
    assert deleted.activity.activity_type == ActivityType.CANCELLED_REQUEST
    assert ci.list_transition_requests(name=name, version=v) == []


def test_comments(version):
    name, v = version
    ci = client("MODEL_LEDGER_CI_TOKEN").model_registry
    created = ci.create_comment(name=name, version=v, comment="f1 0.91 on holdout")
    assert created.comment.comment == "f1 0.91 on holdout"
    assert created.comment.user_id == "sdk-ci"
    updated = ci.update_comment(id=created.comment.id, comment="f1 0.92 on holdout")
    assert updated.comment.comment == "f1 0.92 on holdout"
    with pytest.raises(DatabricksError):
        client("MODEL_LEDGER_RELEASE_TOKEN").model_registry.update_comment(
            id=created.comment.id, comment="not mine"
        )
    ci.delete_comment(id=created.comment.id)
    r = native("GET", f"/models/{name}/versions/{v}/comments", "MODEL_LEDGER_READER_TOKEN")
    assert r.json()["comments"] == []


def test_databricks_transition_stage(version):
    name, v = version
    rm = client("MODEL_LEDGER_RELEASE_TOKEN").model_registry
    moved = rm.transition_stage(
        name=name, version=v, stage="Staging", archive_existing_versions=False, comment="direct"
    )
    assert moved.model_version_databricks.current_stage == "Staging"
    assert stage_of(name, v) == "Staging"
