// Real-browser tests of the web console (issue #19), run by scripts/suites/console.sh against
// a real `model-ledger serve` (embedded store, dev auth). Drives Debian's chromium through
// playwright-core; fails loudly on the first broken expectation.
//
// Env: BASE (server URL), ADMIN, CI_TOKEN (dev tokens), SHOTS (screenshot folder),
// PROFILE (a fresh --user-data-dir).
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const NAME = "fraud<script>window.__xss=1</script>";
const DESCRIPTION = "Scores card payments. <img src=x onerror=\"window.__xss=2\"> <script>window.__xss=3</script>";
const enc = encodeURIComponent;

async function api(method, path, token, body, contentType = "application/json") {
  const r = await fetch(BASE + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": contentType },
    body: body === undefined ? undefined : contentType === "application/json" ? JSON.stringify(body) : body,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// A verified version registered by CI (so release managers may promote it).
async function verifiedVersion(auc) {
  const m = enc(NAME);
  const start = await api("POST", `/api/v1/models/${m}/uploads`, process.env.CI_TOKEN, {});
  await api("PUT", `/api/v1/models/${m}/uploads/${start.upload_id}/files/model.pkl`, process.env.CI_TOKEN,
    `weights ${auc}`, "application/octet-stream");
  const commit = await api("POST", `/api/v1/models/${m}/uploads/${start.upload_id}/commit`, process.env.CI_TOKEN,
    { metrics: { auc } });
  await api("POST", `/api/v1/models/${m}/versions/${commit.version}/verify`, process.env.CI_TOKEN, {});
  return commit.version;
}

await api("POST", "/api/v1/models", process.env.ADMIN, {
  name: NAME, description: DESCRIPTION, tags: { team: "payments" },
});
const v1 = await verifiedVersion(0.93);
const v2 = await verifiedVersion(0.95);
for (let i = 0; i < 3; i++) {
  await api("POST", "/api/v1/models", process.env.ADMIN, { name: `churn-${i}`, description: "demo" });
}

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const contexts = [];

// Every page is watched: a dialog, a request to another origin or a set `__xss` fails the run.
async function person(subject, groups) {
  // One browser per person, each on a fresh --user-data-dir (playwright passes it for a
  // persistent context), so their cookies never mix.
  const context = await chromium.launchPersistentContext(`${process.env.PROFILE}/${subject}`, {
    executablePath: "/usr/bin/chromium", args: ARGS, headless: true,
    viewport: { width: 1280, height: 900 },
  });
  contexts.push(context);
  const page = context.pages()[0] ?? await context.newPage();
  page.on("dialog", (d) => { throw new Error(`a dialog opened: ${d.message()}`); });
  page.on("request", (r) => {
    if (!r.url().startsWith(BASE)) throw new Error(`a request left the origin: ${r.url()}`);
  });
  page.on("pageerror", (e) => { throw new Error(`page error: ${e}`); });
  await page.goto(BASE + "/");
  assert.match(page.url(), /\/signin$/, "an anonymous visit is sent to sign in");
  await page.locator("#dev-sign-in").waitFor();
  await page.fill("input[name=subject]", subject);
  for (const g of groups) await page.check(`input[name=group][value="${g}"]`);
  await page.click("#dev-sign-in button[type=submit]");
  await page.waitForURL(/\/models$/);
  assert.equal(await page.textContent("#who").then((t) => t.includes(subject)), true);
  return page;
}

async function noScriptRan(page, what) {
  const xss = await page.evaluate(() => window.__xss);
  assert.equal(xss, undefined, `${what}: injected markup ran (${xss})`);
}

const shot = (page, file) => page.screenshot({ path: `${SHOTS}/${file}`, fullPage: true });

// A reader: browse, see the description as text, and a denied promotion explained.
const reader = await person("rita", ["ml-readers"]);
await shot(reader, "01-models.png");
assert.equal(await reader.locator("#models tbody tr").count() >= 4, true);
await reader.fill("input[name=q]", "churn");
await reader.click("form.search button");
assert.equal(await reader.locator("#models tbody tr").count(), 3, "search by name");
await reader.goto(`${BASE}/models/${enc(NAME)}`);
assert.equal(await reader.textContent("#model-name"), NAME, "the name is shown as text");
assert.equal((await reader.textContent("#description")).includes("<img src=x"), true);
await noScriptRan(reader, "model page");
await reader.goto(`${BASE}/models/${enc(NAME)}/versions/${v1}`);
const panel = await reader.textContent("#production-panel");
assert.match(panel, /No/);
assert.match(panel, /production-only-release-managers/, "the denial names its policy");
assert.equal(await reader.locator("#to-Production").count(), 0, "a reader is not offered promotion");
await shot(reader, "02-version-denied.png");
await noScriptRan(reader, "version page");

// A release manager promotes v1.
const rm1 = await person("rm1", ["ml-release-managers"]);
await rm1.goto(`${BASE}/models/${enc(NAME)}/versions/${v1}`);
assert.match(await rm1.textContent("#production-panel"), /Yes/);
await rm1.click("#to-Production");
await rm1.waitForURL(new RegExp(`/versions/${v1}$`));
assert.equal(await rm1.textContent("#stage"), "Production");
// ...and asks for v2 to be promoted.
await rm1.goto(`${BASE}/models/${enc(NAME)}/versions/${v2}`);
await rm1.selectOption("#request-form select[name=stage]", "Production");
await rm1.fill("#request-form input[name=comment]", "better auc <b>0.95</b>");
await rm1.click("#request-form button");

// A second release manager approves it from the inbox.
const rm2 = await person("rm2", ["ml-release-managers"]);
await rm2.goto(`${BASE}/approvals`);
await shot(rm2, "03-approvals.png");
await rm2.click("#requests form[action$='/approve'] button");
await rm2.waitForURL(/\/approvals$/);
assert.match(await rm2.textContent("#requests"), /No open requests/);
await rm2.goto(`${BASE}/models/${enc(NAME)}`);
await shot(rm2, "04-model.png");
const versions = await rm2.textContent("#versions");
assert.match(versions, /Production/);

// Live update: the reader's open model page shows a new alias without a reload.
await reader.goto(`${BASE}/models/${enc(NAME)}`);
await reader.evaluate(() => { window.__sameDocument = true; });
await new Promise((r) => setTimeout(r, 500)); // the EventSource connects
await api("PUT", `/api/v1/models/${enc(NAME)}/aliases/champion`, process.env.ADMIN, { version: v1 });
await reader.waitForFunction(() => document.querySelector("#aliases").textContent.includes("champion"),
  null, { timeout: 15000 });
assert.equal(await reader.evaluate(() => window.__sameDocument), true, "updated without a reload");
await noScriptRan(reader, "live-refreshed model page");

// The history shows the decision, with its policies.
await rm2.goto(`${BASE}/models/${enc(NAME)}/history`);
const events = await rm2.textContent("#events");
assert.match(events, /RequestApproved/);
assert.match(events, /rm2/);
assert.equal(await rm2.locator("#events .policy-id").count() > 0, true, "decisions name policies");
await shot(rm2, "05-history.png");
await noScriptRan(rm2, "history");

// Audit: the chain verifies.
await rm2.goto(`${BASE}/audit`);
await rm2.click("#chain button");
assert.match(await rm2.textContent("#chain-status"), /Verified/);
await shot(rm2, "06-audit.png");

for (const c of contexts) await c.close();
console.log("console browser suite: all checks passed; screenshots in", SHOTS);
