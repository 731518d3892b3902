// The CI quality-gate check scripts perform against an MLflow registry, as plain REST:
// `POST model-versions/search` with a JSON body and a `current_stage` filter (which MLflow itself
// answers with 405 and a filter error), and the same search as a GET with query parameters.
// Needs MODEL_LEDGER_URL and MODEL_LEDGER_TOKEN (an ml-admins token); run by run.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

const base = `${process.env.MODEL_LEDGER_URL}/api/2.0/mlflow`;
const auth = { Authorization: `Bearer ${process.env.MODEL_LEDGER_TOKEN}` };

async function call(method, path, body) {
  const init = { method, headers: { ...auth } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`${base}/${path}`, init);
  const json = await res.json();
  return { status: res.status, json };
}

async function must(method, path, body) {
  const r = await call(method, path, body);
  assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r.json)}`);
  return r.json;
}

test('the quality gate finds the Staging version by POST and by GET', async () => {
  const name = `gate-${randomUUID().slice(0, 8)}`;
  await must('POST', 'registered-models/create', { name });
  for (const i of [1, 2, 3]) {
    const v = await must('POST', 'model-versions/create', { name, source: `s3://b/${name}/${i}` });
    assert.equal(v.model_version.version, String(i));
    assert.equal(v.model_version.status, 'READY');
  }
  await must('POST', 'model-versions/transition-stage', {
    name, version: '2', stage: 'Staging', archive_existing_versions: false,
  });

  const filter = `name='${name}' AND current_stage='Staging'`;
  const posted = await must('POST', 'model-versions/search', { name, filter });
  assert.deepEqual(posted.model_versions.map((v) => v.version), ['2']);
  assert.equal(posted.model_versions[0].current_stage, 'Staging');
  assert.equal(typeof posted.model_versions[0].creation_timestamp, 'number');

  const query = new URLSearchParams({ filter, max_results: '10' });
  query.append('order_by', 'version_number DESC');
  const fetched = await must('GET', `model-versions/search?${query}`);
  assert.deepEqual(fetched, posted);

  // The same gate with only the stage filter still sees this model's Staging version.
  const staged = await must('POST', 'model-versions/search', {
    filter: "current_stage IN ('Staging')", max_results: 200000,
  });
  assert.ok(staged.model_versions.some((v) => v.name === name && v.version === '2'));
});

test('a bad filter is a 400 with an MLflow error body', async () => {
  const r = await call('POST', 'model-versions/search', { filter: "current_stage='Prod'" });
  assert.equal(r.status, 400);
  assert.equal(r.json.error_code, 'INVALID_PARAMETER_VALUE');
  const missing = await call('POST', 'model-versions/search', { filter: "name = 'nope' AND" });
  assert.equal(missing.status, 400);
});
