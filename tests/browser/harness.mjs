// Test harness of the browser tests: a real `kadi` binary on 127.0.0.1 (port
// 0) over a fresh SQLite database, an API key made with `kadi keys create`, a
// loopback page for links to point at, and Debian's Chromium. Everything is
// bounded in time and stopped by `stop()`.

import { spawn, execFile } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const targetDir = process.env.CARGO_TARGET_DIR || join(root, "target");

/** The `kadi` binary under test. */
export const kadiBin = process.env.KADI_BIN || join(targetDir, "debug", "kadi");

/** Where screenshots go. */
export const artifacts = process.env.ARTIFACTS_DIR || join(targetDir, "browser-artifacts");

/** Chromium from Debian; never a downloaded browser. */
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** How long `kadi` may take to start listening. */
const START_TIMEOUT_MS = 20_000;

/** Starts everything a scenario needs. */
export async function start() {
  const scratch = mkdtempSync(join(tmpdir(), "kadi-browser-"));
  mkdirSync(artifacts, { recursive: true });
  const env = {
    ...process.env,
    DATABASE_URL: `sqlite:${join(scratch, "kadi.sqlite")}`,
    KADI_LOG_FORMAT: "json",
  };
  delete env.REDIS_URL;

  const created = await run(kadiBin, ["keys", "create", "--name", "browser-test"], {
    env,
    timeout: START_TIMEOUT_MS,
  });
  const key = /^key: (\S+)$/m.exec(created.stdout)?.[1];
  if (!key) throw new Error(`kadi keys create printed no key: ${created.stdout}`);

  const kadi = spawn(kadiBin, ["--listen", "127.0.0.1:0", "--log", "info"], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const log = [];
  const base = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`kadi did not start: ${log.join("\n")}`)),
      START_TIMEOUT_MS,
    );
    let pending = "";
    kadi.stderr.on("data", (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        log.push(line);
        try {
          const entry = JSON.parse(line);
          if (entry.message === "Kadi is listening") {
            clearTimeout(timer);
            resolveUrl(entry.url);
          }
        } catch {
          // Not a JSON line; kept in the log only.
        }
      }
    });
    kadi.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`kadi exited with ${code}: ${log.join("\n")}`));
    });
  });

  // The page links point at: a loopback server, so following a short URL
  // never leaves the machine.
  const landing = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!DOCTYPE html><title>Landing</title><p id=landed>landed</p>");
  });
  await new Promise((ok) => landing.listen(0, "127.0.0.1", ok));
  const landingUrl = `http://127.0.0.1:${landing.address().port}`;

  const context = await chromium.launchPersistentContext(join(scratch, "profile"), {
    executablePath: chromiumPath,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1280, height: 900 },
    timeout: START_TIMEOUT_MS,
  });
  context.setDefaultTimeout(10_000);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });

  async function stop() {
    await context.close().catch(() => {});
    await new Promise((ok) => landing.close(ok));
    if (kadi.exitCode === null) {
      const exited = new Promise((ok) => kadi.once("exit", ok));
      kadi.kill("SIGTERM");
      const timer = setTimeout(() => kadi.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(scratch, { recursive: true, force: true });
  }

  return { base, key, landingUrl, context, log, stop };
}

/** Saves a full-page screenshot as `<name>.png` under the artifacts folder. */
export async function screenshot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}
