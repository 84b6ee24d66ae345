// The runtime matrix: src/app.js (the core's handleRequest and the Hono middleware) served by
// each runtime's own server, checked over real HTTP on 127.0.0.1 with the shared signature
// vectors and the status catalogue. The full conformance suite needs its handlers in the test
// process, so out-of-process runtimes get these checks, with handler runs read back over HTTP.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { send, signatureVectors, streamOversized } from "@mappa-webhooks/conformance";
import { parseEvent, signPayload } from "@mappa-webhooks/core";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const require = createRequire(import.meta.url);
const bin = (pkg: string, file: string) => join(root, "node_modules", pkg, file);
const SECRET = "whsec_runtime_matrix";
const MAX_BODY_BYTES = 16 * 1024;

interface Running {
  baseUrl: string;
  stop(): Promise<void>;
}

/** Starts a server process and waits for its `listening on http://...` line. */
async function startProcess(command: string, args: string[]): Promise<Running> {
  const child: ChildProcess = spawn(command, args, {
    cwd: root,
    env: { ...process.env, PORT: "0", NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code}:\n${output}`));
    });
  });
  return {
    baseUrl,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.on("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Bundles src/worker.js with wrangler's own build and serves the bundle from Miniflare. */
async function startWorkerd(): Promise<Running & { bundle: string }> {
  const outdir = mkdtempSync(join(tmpdir(), "mappa-matrix-worker-"));
  const wrangler = require.resolve("wrangler/bin/wrangler.js");
  await promisify(execFile)(
    process.execPath,
    [wrangler, "deploy", "--dry-run", "--outdir", outdir],
    {
      cwd: root,
      env: {
        ...process.env,
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
        WRANGLER_SEND_METRICS: "false",
        CI: "true",
      },
      timeout: 120_000,
    },
  );
  const { readFileSync } = await import("node:fs");
  const bundle = readFileSync(join(outdir, "worker.js"), "utf8");
  const mf = new Miniflare({
    modules: true,
    // The bundle alone: its source map points outside the output folder, which workerd refuses.
    script: bundle.replace(/\n\/\/# sourceMappingURL=.*$/m, ""),
    compatibilityDate: "2025-09-01",
    host: "127.0.0.1",
    port: 0,
  });
  const url = await mf.ready;
  return {
    bundle,
    baseUrl: url.origin,
    stop: async () => {
      await mf.dispose();
      rmSync(outdir, { recursive: true, force: true });
    },
  };
}

interface Target {
  name: string;
  runtime: string;
  version: RegExp;
  cryptoRuntime: "node" | "web";
  /**
   * A chunked body over the limit is answered 413 while it still streams. Miniflare's loopback
   * proxy in front of workerd does not pass an answer back before the upload ended.
   */
  streamingLimit: boolean;
  start(): Promise<Running & { bundle?: string }>;
}

const nodeEntry = join(root, "src/node.js");
const targets: Target[] = [
  ...(["20", "22", "24"] as const).map((major) => ({
    name: `Node ${major}`,
    runtime: "node",
    version: new RegExp(`^v${major}\\.`),
    cryptoRuntime: "node" as const,
    streamingLimit: true,
    start: () => startProcess(bin(`node${major}-linux-x64`, "bin/node"), [nodeEntry]),
  })),
  {
    name: "Bun",
    runtime: "bun",
    version: /^1\./,
    cryptoRuntime: "node",
    streamingLimit: true,
    start: () => startProcess(bin("@oven/bun-linux-x64", "bin/bun"), [join(root, "src/bun.js")]),
  },
  {
    name: "Deno",
    runtime: "deno",
    version: /^2\./,
    // The core's `deno` export condition: the Web Crypto build (its types need no chunk lookup).
    cryptoRuntime: "web",
    streamingLimit: true,
    start: () =>
      startProcess(bin("@deno/linux-x64-glibc", "deno"), [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env",
        "--allow-read",
        join(root, "src/deno.js"),
      ]),
  },
  {
    name: "workerd (wrangler bundle)",
    runtime: "workerd",
    version: /^workerd$/,
    cryptoRuntime: "web",
    streamingLimit: false,
    start: startWorkerd,
  },
];

let sequence = 0;
function event(label: string, type = "report.completed"): { id: string; body: string } {
  sequence += 1;
  const id = `evt_${label}_${sequence}_${Date.now().toString(36)}`;
  const data =
    type === "report.completed"
      ? { jobId: `job_${id}`, reportId: "rep_m", status: "completed", note: "Zürich — 東京 — 🎉" }
      : { jobId: `job_${id}`, extra: true };
  return { id, body: JSON.stringify({ id, type, createdAt: "2026-01-17T12:05:00.000Z", data }) };
}

async function signed(body: string, timestamp?: number) {
  const signature = await signPayload({
    payload: body,
    secret: SECRET,
    ...(timestamp === undefined ? {} : { timestamp }),
  });
  return { "content-type": "application/json", "mappa-signature": signature };
}

describe.each(targets)("$name", (target) => {
  let running: (Running & { bundle?: string }) | undefined;
  const server = () => {
    if (running === undefined) throw new Error(`${target.name} did not start`);
    return running;
  };
  beforeAll(async () => {
    running = await target.start();
  }, 150_000);
  afterAll(async () => {
    await running?.stop();
  });

  it("runs the runtime it claims, with the expected crypto build", async () => {
    const response = await send(`${server().baseUrl}/runtime`, { method: "GET" });
    const info = JSON.parse(response.body) as Record<string, string>;
    expect(info.runtime).toBe(target.runtime);
    expect(info.version).toMatch(target.version);
    expect(info.cryptoRuntime).toBe(target.cryptoRuntime);
    if (server().bundle !== undefined) {
      // wrangler's bundle picked the core's Web Crypto build: no node: import inside.
      expect(server().bundle).not.toMatch(/node:crypto|require\(["']crypto["']\)/);
    }
  });

  describe.each(["core", "hono"])("%s", (app) => {
    const url = (path: string) => `${server().baseUrl}/${app}${path}`;
    const handled = async (id: string) =>
      (
        JSON.parse((await send(`${server().baseUrl}/handled/${id}`, { method: "GET" })).body) as {
          count: number;
        }
      ).count;

    it.each(signatureVectors.cases)("signature vector: $name → $expect", async (c) => {
      const query = new URLSearchParams({
        now: String(signatureVectors.now),
        tolerance: String(c.toleranceSec ?? signatureVectors.toleranceSec),
        secrets: (c.secrets ?? [signatureVectors.secret]).join(","),
      });
      const body = Buffer.from(c.bodyBase64, "base64");
      const response = await send(url(`/vectors?${query}`), {
        headers: { ...c.headers, "content-type": "application/json" },
        body,
      });
      const error = (JSON.parse(response.body) as { error?: string }).error;
      if (c.expect === "ok") {
        let parseError: string | undefined;
        try {
          parseEvent(new Uint8Array(body));
        } catch (caught) {
          parseError = (caught as { code: string }).code;
        }
        expect({ status: response.status, error }).toEqual(
          parseError === undefined
            ? { status: 200, error: undefined }
            : { status: 400, error: parseError },
        );
      } else {
        expect({ status: response.status, error }).toEqual({ status: 401, error: c.expect });
      }
    });

    it("200 for a signed delivery (handler once), 200 duplicate without running again", async () => {
      const { id, body } = event("ok");
      const headers = await signed(body);
      const first = await send(url("/webhooks/mappa"), { headers, body });
      expect({ status: first.status, body: JSON.parse(first.body) }).toEqual({
        status: 200,
        body: { received: true },
      });
      const again = await send(url("/webhooks/mappa"), { headers, body });
      expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
      expect(await handled(id)).toBe(1);
    });

    it("200 for a chunked delivery with multi-byte UTF-8 split inside a character", async () => {
      const { id, body } = event("chunked");
      const bytes = Buffer.from(body, "utf8");
      const split = bytes.indexOf(Buffer.from("東", "utf8")) + 1;
      const response = await send(url("/webhooks/mappa"), {
        headers: await signed(body),
        chunks: [bytes.subarray(0, split), bytes.subarray(split)],
      });
      expect(response.status).toBe(200);
      expect(await handled(id)).toBe(1);
    });

    it("401 for a tampered body, a stale timestamp and a missing signature", async () => {
      const { id, body } = event("bad");
      const tampered = await send(url("/webhooks/mappa"), {
        headers: await signed(body),
        body: body.replace("rep_m", "rep_x"),
      });
      expect(JSON.parse(tampered.body)).toEqual({ error: "signature_mismatch" });
      const stale = await send(url("/webhooks/mappa"), {
        headers: await signed(body, Math.floor(Date.now() / 1000) - 3600),
        body,
      });
      expect(JSON.parse(stale.body)).toEqual({ error: "timestamp_outside_tolerance" });
      const missing = await send(url("/webhooks/mappa"), {
        headers: { "content-type": "application/json" },
        body,
      });
      expect([tampered.status, stale.status, missing.status]).toEqual([401, 401, 401]);
      expect(JSON.parse(missing.body)).toEqual({ error: "missing_signature" });
      expect(await handled(id)).toBe(0);
    });

    it("400 for signed bodies that are not JSON or not an event", async () => {
      for (const [body, code] of [
        ['{"id":"evt_broken","type":', "invalid_json"],
        ["[1,2,3]", "invalid_event"],
      ] as const) {
        const response = await send(url("/webhooks/mappa"), { headers: await signed(body), body });
        expect(response.status).toBe(400);
        expect(JSON.parse(response.body).error).toBe(code);
      }
    });

    it("405 with Allow: POST for GET", async () => {
      const response = await send(url("/webhooks/mappa"), { method: "GET" });
      expect(response.status).toBe(405);
      expect(response.headers.allow).toBe("POST");
      expect(JSON.parse(response.body).error).toBe("method_not_allowed");
    });

    it("413 for a declared body over the limit", async () => {
      const body = JSON.stringify({ pad: "x".repeat(MAX_BODY_BYTES) });
      const declared = await send(url("/webhooks/mappa"), { headers: await signed(body), body });
      expect(declared.status).toBe(413);
      expect(JSON.parse(declared.body).error).toBe("payload_too_large");
    });

    if (target.streamingLimit) {
      it("413 for a chunked body over the limit while it streams", async () => {
        // Each attempt on a server of its own, as in the conformance suite. Answering before the
        // upload ends is a race at the TCP level: when a runtime closes the socket right after
        // the early 413 (Bun sometimes does; @hono/node-server on a second upload), the client's
        // unread bytes make the kernel send a reset that can discard the answer in flight. So:
        // every attempt must show the server stopped reading early, and at least one of three
        // must deliver the 413 to the client.
        // Generous: a runtime whose stream keeps flowing after the cancel (the body is discarded,
        // not buffered) lets a client push a lot before the 413 arrives on a busy machine.
        const maxBytes = 256 * 1024 * 1024;
        const statuses: number[] = [];
        for (let attempt = 0; attempt < 3 && !statuses.includes(413); attempt++) {
          const fresh = await target.start();
          try {
            const streamed = await streamOversized(
              `${fresh.baseUrl}/${app}/webhooks/mappa`,
              { "content-type": "application/json", "mappa-signature": "t=1,v1=00" },
              maxBytes,
              64 * 1024,
              // Paced past 1 MiB: the bound then measures the server's reaction, not its share
              // of a busy machine's CPU; this check tolerates the resets pacing makes likelier.
              1024 * 1024,
            );
            expect(streamed.bytesWritten).toBeLessThan(maxBytes);
            statuses.push(streamed.status);
            if (streamed.status === 413) expect(streamed.answeredEarly).toBe(true);
          } finally {
            await fresh.stop();
          }
        }
        expect(statuses).toContain(413);
        // Only a 413 or a reset (0) ever: never a 200 or a 5xx.
        expect(statuses.every((status) => status === 413 || status === 0)).toBe(true);
      });
    }

    it("500 when a handler throws, then 200 on the retry (effect once)", async () => {
      const { id, body } = event(`fail_once_${app}`);
      const headers = await signed(body);
      const first = await send(url("/webhooks/mappa"), { headers, body });
      expect(first.status).toBe(500);
      expect(JSON.parse(first.body)).toEqual({ error: "handler_failed" });
      const retry = await send(url("/webhooks/mappa"), { headers, body });
      expect(retry.status).toBe(200);
      expect(await handled(id)).toBe(1);
    });

    it("200 for an unknown event type, handed to onUnknown", async () => {
      const { id, body } = event("unknown", "report.archived");
      const response = await send(url("/webhooks/mappa"), { headers: await signed(body), body });
      expect(response.status).toBe(200);
      expect(await handled(id)).toBe(1);
    });
  });
});
