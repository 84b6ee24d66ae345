// examples/hono as a user runs it: `pnpm start` on Node, and the Worker bundled by wrangler
// from its wrangler.toml, run on workerd.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reportCompleted, signedHeaders } from "./helpers.js";

const exampleDir = fileURLToPath(new URL("../../../examples/hono/", import.meta.url));
const SECRET = "whsec_hono_example";

function collect(child: ChildProcess): string[] {
  const lines: string[] = [];
  const push = (chunk: Buffer) => lines.push(...chunk.toString("utf8").split("\n"));
  child.stdout?.on("data", push);
  child.stderr?.on("data", push);
  return lines;
}

// The Node server keeps handled events in an SQLite file (when a driver loads): here, one of its
// own. The Worker keeps the memory store.
const scratch = mkdtempSync(join(tmpdir(), "mappa-hono-example-"));
process.env.SQLITE_FILE = join(scratch, "mappa-webhooks.db");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// On Node: the contract every example keeps (typed events logged once, duplicates, forgeries
// refused and logged, 405 JSON for other methods, a stalled body answered 408, /api/echo).
describeExampleApp("examples/hono", exampleDir);

describe("examples/hono as a Worker (wrangler bundle on workerd)", () => {
  const outDir = mkdtempSync(join(tmpdir(), "mappa-hono-worker-"));
  let mf: Miniflare | undefined;
  let bundle = "";

  beforeAll(async () => {
    const wrangler = createRequire(join(exampleDir, "package.json")).resolve(
      "wrangler/bin/wrangler.js",
    );
    // `wrangler deploy --dry-run` bundles exactly as a deploy would, offline, from wrangler.toml.
    const child = spawn(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", outDir], {
      cwd: exampleDir,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output = collect(child);
    const code = await new Promise((resolve) => child.once("exit", resolve));
    if (code !== 0) throw new Error(`wrangler failed:\n${output.join("\n")}`);
    bundle = readFileSync(join(outDir, "worker.js"), "utf8");
    mf = new Miniflare({
      modules: true,
      script: bundle,
      compatibilityDate: "2025-09-01",
      bindings: { MAPPA_WEBHOOK_SECRET: SECRET },
    });
    await mf.ready;
  }, 60_000);

  afterAll(async () => {
    await mf?.dispose();
    rmSync(outDir, { recursive: true, force: true });
  });

  it("contains no node:crypto", () => {
    expect(bundle).not.toMatch(/node:crypto|from\s*["']crypto["']|require\(["']crypto["']\)/);
    expect(bundle).toContain("crypto.subtle");
  });

  it("answers deliveries with the secret from the bindings", async () => {
    if (mf === undefined) throw new Error("workerd did not start");
    const body = reportCompleted("evt_example_worker_1");
    const headers = await signedHeaders(body, SECRET);
    const url = "http://example.test/webhooks/mappa";
    const first = await mf.dispatchFetch(url, { method: "POST", body, headers });
    expect(await first.json()).toEqual({ received: true });
    const again = await mf.dispatchFetch(url, { method: "POST", body, headers });
    expect(await again.json()).toEqual({ received: true, duplicate: true });
    const tampered = await mf.dispatchFetch(url, { method: "POST", body: `${body}\n`, headers });
    expect(tampered.status).toBe(401);
    await tampered.arrayBuffer();
    const get = await mf.dispatchFetch(url);
    expect(get.status).toBe(405);
    await get.arrayBuffer();
  });
});
