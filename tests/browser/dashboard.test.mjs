// Kadi's dashboard in a real headless Chromium: sign in with a key made by
// `kadi keys create`, create a user and a link with a custom code, follow the
// short URL, see the click in the server-drawn chart, deactivate the link and
// see the redirect stop, and get clear pages for a wrong key, a forged form
// and a taken code, all without a console error or a CSP violation.
// The steps run in order and share one signed-in browser.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { start, screenshot } from "./harness.mjs";

/** How long the click writer may take to store a click. */
const CLICK_STORED_TIMEOUT_MS = 10_000;

/** Console errors a step provokes on purpose: the status of an error page. */
const PROVOKED = /Failed to load resource: the server responded with a status of (401|403|409)/;

let env;
let page;
const consoleErrors = [];
const cspViolations = [];
const code = "launch-2026";
let linkPath;

before(async () => {
  env = await start();
  // Report CSP violations through the console, whatever page is open.
  await env.context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  env.context.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    consoleErrors.push(text);
    if (/content security policy|csp violation|refused to/i.test(text)) cspViolations.push(text);
  });
  env.context.on("weberror", (error) => consoleErrors.push(String(error.error())));
  page = await env.context.newPage();
});

after(async () => {
  await env?.stop();
});

async function alertText() {
  return (await page.getByRole("alert").textContent()).trim();
}

test("the dashboard asks for a key and refuses a wrong one", async () => {
  const response = await page.goto(`${env.base}/dashboard`);
  assert.equal(new URL(page.url()).pathname, "/dashboard/sign-in");
  assert.equal(response.status(), 200);
  await screenshot(page, "sign-in");

  await page.getByLabel("API key").fill(`kadi_${"0".repeat(64)}`);
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/dashboard/sign-in") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Sign in" }).click(),
  ]);
  assert.equal(refused.status(), 401);
  assert.match(await alertText(), /This API key was not accepted/);
  await screenshot(page, "error-wrong-key");
});

test("signing in with the key from `kadi keys create` opens the overview", async () => {
  await page.getByLabel("API key").fill(env.key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${env.base}/dashboard`);
  assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Overview");
  const cookies = await env.context.cookies(`${env.base}/dashboard`);
  const session = cookies.find((c) => c.name === "kadi_session");
  assert.ok(session, "session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.ok(!session.value.includes(env.key.slice(5)), "the key is not in the cookie");
  // Scripts cannot read the session cookie.
  assert.equal(await page.evaluate(() => document.cookie.includes("kadi_session")), false);
});

test("a user is created from the users page", async () => {
  await page.getByRole("link", { name: "Users", exact: true }).click();
  await page.getByLabel("Username").fill("ada");
  await page.getByLabel("E-mail address").fill("ada@example.com");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.waitForURL(/\/dashboard\/users\/\d+\?notice=user_created/);
  assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "User ada");
  await page.getByRole("link", { name: "Users", exact: true }).click();
  assert.ok(await page.locator("#users").getByRole("link", { name: "ada" }).isVisible());
  await screenshot(page, "users");
});

test("a link is created with a custom code and every option", async () => {
  await page.getByRole("link", { name: "New link", exact: true }).click();
  await page.getByLabel("Target URL").fill(`${env.landingUrl}/spring`);
  await page.getByLabel("Custom short code (optional)").fill(code);
  await page.getByLabel("Owner").selectOption({ label: "ada (#1)" });
  await page.getByLabel("Title (optional)").fill("Spring <launch> & sale");
  await page.getByLabel("Expires at, UTC (optional)").fill("2030-01-31T18:00");
  await page.getByLabel("Redirect status").selectOption("307");
  await screenshot(page, "new-link");
  await page.getByRole("button", { name: "Create link" }).click();
  await page.waitForURL(/\/dashboard\/links\/\d+\?notice=created/);
  linkPath = new URL(page.url()).pathname;
  assert.equal(await page.getByRole("status").textContent(), "Link created.");
  assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), `Link ${code}`);
  const facts = await page.locator("dl.facts").textContent();
  assert.match(facts, /Spring <launch> & sale/);
  assert.match(facts, /2030-01-31 18:00 UTC/);
  assert.match(facts, /307/);
});

test("the short URL is copied and drawn as a QR code", async () => {
  const shortUrl = `${env.base}/${code}`;
  assert.equal(await page.getByLabel("Short URL").inputValue(), shortUrl);
  await page.getByRole("button", { name: "Copy" }).click();
  await page.getByRole("button", { name: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), shortUrl);
  const qr = page.getByRole("img", { name: `QR code for ${shortUrl}` });
  await qr.waitFor();
  const loaded = await qr.evaluate((img) => img.complete && img.naturalWidth > 0);
  assert.ok(loaded, "QR code image loaded");
});

test("following the short URL records a click that the chart shows", async () => {
  const visitor = await env.context.newPage();
  const landed = await visitor.goto(`${env.base}/${code}`, { referer: "https://news.example/post" });
  assert.equal(landed.status(), 200);
  assert.equal(visitor.url(), `${env.landingUrl}/spring`);
  assert.equal(await visitor.locator("#landed").textContent(), "landed");
  const hop = landed.request().redirectedFrom();
  assert.equal((await hop.response()).status(), 307);
  await visitor.close();

  // The click writer stores clicks in batches: reload until the bar appears.
  const today = new Date().toISOString().slice(0, 10);
  const deadline = Date.now() + CLICK_STORED_TIMEOUT_MS;
  for (;;) {
    await page.goto(`${env.base}${linkPath}`);
    if ((await page.locator('#clicks-chart rect.bar[data-count="1"]').count()) === 1) break;
    assert.ok(Date.now() < deadline, "the click never reached the chart");
    await page.waitForTimeout(250);
  }
  const bar = page.locator('#clicks-chart rect.bar[data-count="1"]');
  assert.equal(await bar.getAttribute("data-bucket"), today);
  assert.equal(await page.locator("#clicks-chart").getAttribute("data-total"), "1");
  assert.equal(await bar.locator("title").textContent(), `${today}: 1 click`);
  const latest = await page.locator("#latest-clicks tbody").textContent();
  assert.match(latest, /https:\/\/news\.example\/post/);
  assert.match(latest, /Headless Chrome|Chrome/);
  await screenshot(page, "link");

  await page.getByRole("link", { name: "Per hour" }).click();
  const hour = new Date().toISOString().slice(0, 13);
  assert.equal(
    await page.locator('#clicks-chart rect.bar[data-count="1"]').getAttribute("data-bucket"),
    hour,
  );
});

test("the listing finds the link by its title", async () => {
  await page.getByRole("link", { name: "Links", exact: true }).click();
  await page.getByLabel("Search by short code, target URL or title").fill("SPRING <LAUNCH>");
  await page.getByRole("button", { name: "Search" }).click();
  const row = page.locator(`#links tr[data-code="${code}"]`);
  assert.equal(await row.count(), 1);
  const cells = await row.locator("td").allTextContents();
  assert.deepEqual(cells.slice(0, 6), [code, `${env.landingUrl}/spring`, "Spring <launch> & sale", "ada", "active", "1"]);
  await screenshot(page, "links");
});

test("a taken short code is a clear conflict, and the form keeps its input", async () => {
  await page.getByRole("link", { name: "New link", exact: true }).click();
  await page.getByLabel("Target URL").fill(`${env.landingUrl}/other`);
  await page.getByLabel("Custom short code (optional)").fill(code);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/dashboard/links") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Create link" }).click(),
  ]);
  assert.equal(answer.status(), 409);
  assert.match(await alertText(), new RegExp(`short code "${code}" is taken`));
  assert.equal(await page.getByLabel("Target URL").inputValue(), `${env.landingUrl}/other`);
  await screenshot(page, "error-code-taken");
});

test("a form without its CSRF token is refused and changes nothing", async () => {
  await page.goto(`${env.base}${linkPath}/edit`);
  await page.getByLabel("Title (optional)").fill("Forged");
  await page.locator('form[action$="/edit"] input[name="csrf"]').evaluate((input) => { input.value = "forged"; });
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/edit") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Save changes" }).click(),
  ]);
  assert.equal(answer.status(), 403);
  assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Form refused");
  assert.match(await alertText(), /nothing was changed/);
  await screenshot(page, "error-csrf");
  await page.goto(`${env.base}${linkPath}`);
  assert.doesNotMatch(await page.locator("dl.facts").textContent(), /Forged/);
});

test("deactivating the link stops its redirect", async () => {
  await page.getByRole("button", { name: "Deactivate" }).click();
  await page.waitForURL(/notice=deactivated/);
  assert.match(await page.getByRole("status").textContent(), /no longer redirects/);
  const answer = await env.context.request.get(`${env.base}/${code}`, { maxRedirects: 0 });
  assert.equal(answer.status(), 404);
  await page.getByRole("button", { name: "Reactivate" }).waitFor();
});

test("the pages work on a phone's width and from the keyboard", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${env.base}/dashboard/links`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await screenshot(page, "links-phone");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main");
  // Every form control has a label.
  for (const path of ["/dashboard/links/new", "/dashboard/users", "/dashboard/links"]) {
    await page.goto(`${env.base}${path}`);
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
        .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-label"))
        .map((el) => el.name || el.id),
    );
    assert.deepEqual(unlabelled, [], `unlabelled controls on ${path}`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("signing out ends the session", async () => {
  await page.goto(`${env.base}/dashboard`);
  await screenshot(page, "overview");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/dashboard\/sign-in\?signed_out=1/);
  assert.equal(await page.getByRole("status").textContent(), "You are signed out.");
  await page.goto(`${env.base}/dashboard/links`);
  assert.equal(new URL(page.url()).pathname, "/dashboard/sign-in");
});

test("no page logged a console error or a CSP violation", () => {
  assert.deepEqual(cspViolations, []);
  assert.deepEqual(consoleErrors.filter((text) => !PROVOKED.test(text)), []);
});
