// examples/hono as a user runs it: `pnpm start` on Node, and the Worker bundled by wrangler
// from its wrangler.toml, run on workerd.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reportCompleted, signedHeaders } from "./helpers.js";

const exampleDir = fileURLToPath(new URL("../../../examples/hono/", import.meta.url));
const SECRET = "whsec_hono_example";

/** Polls until `check` holds, every 50 ms, for at most `timeoutMs`. */
async function waitUntil(check: () => boolean, timeoutMs: number): Promise<void> {
  for (let waited = 0; waited <= timeoutMs; waited += 50) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`not ready within ${timeoutMs} ms`);
}

function collect(child: ChildProcess): string[] {
  const lines: string[] = [];
  const push = (chunk: Buffer) => lines.push(...chunk.toString("utf8").split("\n"));
  child.stdout?.on("data", push);
  child.stderr?.on("data", push);
  return lines;
}

describe("examples/hono on Node (pnpm start)", () => {
  let child: ChildProcess | undefined;
  let output: string[] = [];
  let origin = "";

  beforeAll(async () => {
    child = spawn(process.execPath, ["server.js"], {
      cwd: exampleDir,
      env: { ...process.env, PORT: "0", MAPPA_WEBHOOK_SECRET: SECRET },
      stdio: ["ignore", "pipe", "pipe"],
    });
    output = collect(child);
    await waitUntil(() => {
      if (child?.exitCode !== null) throw new Error(output.join("\n"));
      return output.some((line) => line.startsWith("listening on "));
    }, 15_000);
    const line = output.find((entry) => entry.startsWith("listening on ")) ?? "";
    origin = line.slice("listening on ".length);
  });

  afterAll(async () => {
    if (child?.pid === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child?.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  });

  it("prints one listening line with the real port", () => {
    expect(origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(origin).not.toMatch(/:0$/);
    expect(output.filter((line) => line.startsWith("listening on "))).toHaveLength(1);
  });

  it("answers a signed delivery 200 and logs it once; duplicates and tampering too", async () => {
    const id = "evt_example_node_1";
    const body = reportCompleted(id);
    const headers = await signedHeaders(body, SECRET);
    const post = (payload: string) =>
      fetch(`${origin}/webhooks/mappa`, { method: "POST", body: payload, headers });
    expect((await post(body)).status).toBe(200);
    expect(await (await post(body)).json()).toEqual({ received: true, duplicate: true });
    expect((await post(`${body} `)).status).toBe(401);
    await waitUntil(() => output.includes(`[mappa] report.completed ${id}`), 2_000);
    expect(output.filter((line) => line === `[mappa] report.completed ${id}`)).toHaveLength(1);
  });

  it("serves the JSON route", async () => {
    const response = await fetch(`${origin}/api/echo`, {
      method: "POST",
      body: JSON.stringify({ ok: [1] }),
      headers: { "content-type": "application/json" },
    });
    expect(await response.json()).toEqual({ echo: { ok: [1] } });
  });
});

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
