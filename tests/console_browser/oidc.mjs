// Real-browser OIDC sign-in to the web console (issue #19), run by scripts/suites/console.sh.
//
// Starts a real OpenID Provider (the npm package oidc-provider, with its development login
// and consent pages) on a random loopback port, with the console registered as a confidential
// client that must use PKCE and a user whose ID token carries groups; then starts
// `model-ledger serve` trusting that provider (no dev auth) and signs in through the
// provider's pages with Debian's chromium. Fails loudly on the first broken expectation.
//
// Env: BIN (the model-ledger binary), ROOT (repository root, for policies/), WORK (a scratch
// folder), SHOTS (screenshot folder), PROFILE (a fresh --user-data-dir).
import http from "node:http";
import net from "node:net";
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync, openSync } from "node:fs";
import assert from "node:assert/strict";
import Provider from "oidc-provider";
import { chromium } from "playwright-core";

const { BIN, ROOT, WORK, SHOTS, PROFILE } = process.env;
const CLIENT_ID = "model-ledger-console";
const SECRET = "browser-suite-client-secret";
const USER = { login: "grace", name: "Grace Hopper", groups: ["ml-release-managers", "ml-readers"] };

async function freePort() {
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  return port;
}

// The provider: its own port, its own RS256 key, PKCE required for every client, and the
// scope-requested claims (name, groups) put in the ID token itself.
const opServer = http.createServer();
await new Promise((r) => opServer.listen(0, "127.0.0.1", r));
const ISSUER = `http://127.0.0.1:${opServer.address().port}`;
const mlPort = await freePort();
const BASE = `http://127.0.0.1:${mlPort}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "suite-rs256", alg: "RS256", use: "sig" };
const provider = new Provider(ISSUER, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: SECRET,
    redirect_uris: [`${BASE}/signin/oidc/callback`],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  pkce: { required: () => true },
  claims: {
    openid: ["sub"],
    profile: ["name", "preferred_username"],
    email: ["email"],
    groups: ["groups"],
  },
  conformIdTokenClaims: false,
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id, name: USER.name, preferred_username: id, email: `${id}@example.com`, groups: USER.groups,
    }),
  }),
  jwks: { keys: [jwk] },
  cookies: { keys: ["browser-suite-cookie-key"] },
  features: { devInteractions: { enabled: true } },
});
opServer.on("request", provider.callback());

// The registry, trusting the provider for API tokens and console sign-in.
const secretFile = `${WORK}/console-client-secret`;
writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
const log = openSync(`${WORK}/serve-oidc.log`, "w");
const server = spawn(BIN, [
  "serve", "--data-dir", `${WORK}/data-oidc`, "--listen", `127.0.0.1:${mlPort}`, "--policies", "policies",
  "--oidc-issuer", ISSUER,
  "--console-oidc-issuer", ISSUER,
  "--console-oidc-client-id", CLIENT_ID,
  "--console-oidc-client-secret-file", secretFile,
  "--console-oidc-scopes", "openid profile email groups",
  "--console-external-url", BASE,
], { cwd: ROOT, stdio: ["ignore", log, log] });

const contexts = [];
try {
  let up = false;
  for (let i = 0; i < 100 && !up; i++) {
    up = await fetch(`${BASE}/healthz`).then((r) => r.ok, () => false);
    if (!up) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(up, true, "model-ledger serve came up (see serve-oidc.log)");
  const discovery = await fetch(`${ISSUER}/.well-known/openid-configuration`).then((r) => r.json());
  assert.deepEqual(discovery.code_challenge_methods_supported, ["S256"]);

  const context = await chromium.launchPersistentContext(`${PROFILE}/grace`, {
    executablePath: "/usr/bin/chromium", headless: true, viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  contexts.push(context);
  const page = context.pages()[0] ?? await context.newPage();
  page.on("dialog", (d) => { throw new Error(`a dialog opened: ${d.message()}`); });
  // The provider's dev pages link a web font; nothing leaves the machine (the request is
  // aborted), and a registry page must never ask another origin for anything.
  const local = (url) => url.startsWith(BASE) || url.startsWith(ISSUER);
  await context.route((u) => !local(u.href), (route) => route.abort());
  page.on("request", (r) => {
    if (!local(r.url()) && r.frame().url().startsWith(BASE)) {
      throw new Error(`a registry page made a request to another origin: ${r.url()}`);
    }
  });
  const shot = (file) => page.screenshot({ path: `${SHOTS}/${file}`, fullPage: true });

  // Signed out: the sign-in page offers the provider and no dev sign-in.
  await page.goto(`${BASE}/`);
  assert.match(page.url(), /\/signin$/);
  assert.equal(await page.locator("#dev-sign-in").count(), 0, "no dev sign-in without dev auth");
  assert.match(await page.textContent("#oidc-sign-in"), new RegExp(`Sign in with ${ISSUER}`));
  await shot("07-oidc-signin.png");

  // Through the provider's login and consent pages, and back signed in.
  await page.click("#oidc-sign-in");
  await page.waitForURL((u) => u.href.startsWith(`${ISSUER}/interaction/`));
  await page.fill("input[name=login]", USER.login);
  await page.fill("input[name=password]", "any password");
  await shot("08-oidc-provider-login.png");
  await page.click("button[type=submit]");
  await page.waitForSelector("input[name=prompt][value=consent]", { state: "attached" });
  await shot("09-oidc-provider-consent.png");
  await page.click("button[type=submit]");
  await page.waitForURL(`${BASE}/models`);
  const who = await page.textContent("#who");
  assert.match(who, /Grace Hopper/, "the ID token's name is shown");
  assert.match(who, /ml-release-managers/, "the ID token's groups are the session's");
  // Release managers may read the audit, so the link is offered, and the page opens.
  await page.click("#nav-audit");
  await page.waitForURL(`${BASE}/audit`);
  assert.match(await page.textContent("h1"), /Audit/);
  await page.goto(`${BASE}/models`);
  await shot("10-oidc-signed-in.png");
  const cookies = await context.cookies(BASE);
  const session = cookies.find((c) => c.name === "ml_session");
  assert.equal(session?.httpOnly, true);
  assert.equal(session?.sameSite, "Lax");
  assert.equal(cookies.some((c) => c.name === "ml_oidc"), false, "the pending sign-in is spent");

  // Sign out: back to the sign-in page, and the pages ask for sign-in again.
  await page.click("form[action='/signout'] button");
  await page.waitForURL(`${BASE}/signin`);
  await page.goto(`${BASE}/models`);
  assert.match(page.url(), /\/signin$/, "signed out");

  // The provider itself holds the code to its PKCE challenge. An authorization request of the
  // test's own making (its own verifier, and a state the console never issued): the provider
  // remembers Grace and her consent, so it answers at once with a code; the console refuses
  // the callback it did not start, and the code, redeemed with another verifier than the
  // one its challenge was made from, is refused by the provider.
  const { createHash, randomBytes } = await import("node:crypto");
  const verifier = randomBytes(32).toString("base64url");
  const authorize = new URL(discovery.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: "code", client_id: CLIENT_ID, redirect_uri: `${BASE}/signin/oidc/callback`,
    scope: "openid profile email groups", state: "a-state-the-console-never-issued",
    nonce: randomBytes(16).toString("base64url"),
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
  })) authorize.searchParams.set(k, v);
  await page.goto(authorize.href);
  if (page.url().startsWith(ISSUER)) await page.click("button[type=submit]"); // consent again
  await page.waitForURL((u) => u.href.startsWith(`${BASE}/signin/oidc/callback`));
  assert.match(await page.textContent("body"), /OIDC_STATE_INVALID/, "the console refuses a callback it did not start");
  assert.equal((await context.cookies(BASE)).some((c) => c.name === "ml_session"), false);
  const code = new URL(page.url()).searchParams.get("code");
  assert.ok(code, "the provider sent a code back");
  const redeem = (codeVerifier) => fetch(discovery.token_endpoint, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${SECRET}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({
      grant_type: "authorization_code", code, redirect_uri: `${BASE}/signin/oidc/callback`,
      ...(codeVerifier ? { code_verifier: codeVerifier } : {}),
    }),
  });
  for (const wrong of [undefined, randomBytes(32).toString("base64url")]) {
    const refused = await redeem(wrong);
    assert.equal(refused.status, 400, `a ${wrong ? "wrong" : "missing"} PKCE verifier is refused by the provider`);
    assert.equal((await refused.json()).error, "invalid_grant");
  }
  // The control: the same code with the verifier its challenge was made from is honoured, so
  // the refusals above were the verifier's, not a spent or bad code's.
  const honoured = await redeem(verifier);
  assert.equal(honoured.status, 200, "the right verifier redeems the code");
  assert.ok((await honoured.json()).id_token);

  console.log("console OIDC browser suite: all checks passed; screenshots in", SHOTS);
} finally {
  for (const c of contexts) await c.close().catch(() => {});
  server.kill();
  opServer.close();
  opServer.closeAllConnections?.();
}
