// The adapter on real workerd (offline, through miniflare), without Node compatibility flags:
// the worker can only load if the bundle has no node: imports, so the core's Web Crypto build
// is proven to be the one used.
import { fileURLToPath } from "node:url";
import { signatureVectors } from "@mappa-webhooks/conformance";
import { parseEvent } from "@mappa-webhooks/core";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reportCompleted, signedHeaders } from "./helpers.js";

const vectors = signatureVectors;

const SECRET = "whsec_workerd_test";
const ORIGIN = "http://worker.test";
let mf: Miniflare;
let bundle = "";

beforeAll(async () => {
  const result = await build({
    entryPoints: [fileURLToPath(new URL("./workerd/worker.ts", import.meta.url))],
    bundle: true,
    write: false,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    logLevel: "silent",
  });
  bundle = result.outputFiles[0]?.text ?? "";
  mf = new Miniflare({ modules: true, script: bundle, compatibilityDate: "2025-09-01" });
  await mf.ready;
});

afterAll(async () => {
  await mf?.dispose();
});

async function deliver(path: string, body: string, headers?: Record<string, string>) {
  const res = await mf.dispatchFetch(`${ORIGIN}${path}`, {
    method: "POST",
    body,
    headers: headers ?? (await signedHeaders(body, SECRET)),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function handledCount(id: string): Promise<number> {
  const res = await mf.dispatchFetch(`${ORIGIN}/handled/${id}`);
  return ((await res.json()) as { count: number }).count;
}

describe("on workerd", () => {
  it("bundles the Web Crypto build of the core and no node: module", async () => {
    expect(bundle).not.toMatch(/node:crypto|from\s*["']crypto["']|require\(["']crypto["']\)/);
    expect(bundle).toContain("crypto.subtle");
    const res = await mf.dispatchFetch(`${ORIGIN}/runtime`);
    expect(await res.json()).toEqual({ cryptoRuntime: "web", hasProcess: "undefined" });
  });

  it("answers 200 and runs the handler once for a signed delivery", async () => {
    const id = "evt_workerd_ok";
    const res = await deliver("/webhooks/mappa", reportCompleted(id));
    expect(res).toEqual({ status: 200, json: { received: true } });
    expect(await handledCount(id)).toBe(1);
  });

  it("answers a duplicate 200 without running the handler again", async () => {
    const id = "evt_workerd_duplicate";
    const body = reportCompleted(id);
    const headers = await signedHeaders(body, SECRET);
    expect((await deliver("/webhooks/mappa", body, headers)).status).toBe(200);
    const second = await deliver("/webhooks/mappa", body, headers);
    expect(second).toEqual({ status: 200, json: { received: true, duplicate: true } });
    expect(await handledCount(id)).toBe(1);
  });

  it("answers 401 for a tampered body", async () => {
    const body = reportCompleted("evt_workerd_tampered");
    const headers = await signedHeaders(body, SECRET);
    const res = await deliver(
      "/webhooks/mappa",
      body.replace('"completed"', '"succeeded"'),
      headers,
    );
    expect(res).toEqual({ status: 401, json: { error: "signature_mismatch" } });
    expect(await handledCount("evt_workerd_tampered")).toBe(0);
  });

  it("answers 400 for a signed body that is not an event", async () => {
    const res = await deliver("/webhooks/mappa", "[1,2,3]");
    expect(res.status).toBe(400);
    expect(res.json.error).toBe("invalid_event");
    expect((await deliver("/webhooks/mappa", "{nope")).json.error).toBe("invalid_json");
  });

  it("answers 405 for GET", async () => {
    const res = await mf.dispatchFetch(`${ORIGIN}/webhooks/mappa`);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    await res.arrayBuffer();
  });

  it("answers 413 over maxBodyBytes", async () => {
    const body = JSON.stringify({ id: "evt_big", type: "x", data: { pad: "y".repeat(2048) } });
    const res = await deliver("/webhooks/mappa", body);
    expect(res.status).toBe(413);
    expect(res.json.error).toBe("payload_too_large");
  });

  it("answers 200 for an unknown event type", async () => {
    const body = JSON.stringify({ id: "evt_workerd_unknown", type: "voice.cloned", data: {} });
    expect(await deliver("/webhooks/mappa", body)).toEqual({
      status: 200,
      json: { received: true },
    });
    expect(await handledCount("evt_workerd_unknown")).toBe(1);
  });

  it("acks first and finishes the handler through executionCtx.waitUntil", async () => {
    const id = "evt_workerd_ack_first";
    const res = await deliver("/webhooks/ack-first", reportCompleted(id));
    expect(res).toEqual({ status: 200, json: { received: true } });
    // Bounded wait for the background work.
    let count = 0;
    for (let attempt = 0; attempt < 50 && count === 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      count = await handledCount(id);
    }
    expect(count).toBe(1);
  });

  it("lets the next handler read the cached body (mode: next)", async () => {
    const res = await deliver("/webhooks/next", reportCompleted("evt_workerd_next"));
    expect(res).toEqual({
      status: 200,
      json: { event: "evt_workerd_next", body: "evt_workerd_next" },
    });
  });

  describe("signature vectors", () => {
    it.each(vectors.cases.map((vector) => [vector.name, vector] as const))(
      "%s",
      async (_name, vector) => {
        const query = new URLSearchParams({
          now: String(vectors.now),
          tolerance: String(vector.toleranceSec ?? vectors.toleranceSec),
          secrets: (vector.secrets ?? [vectors.secret]).join(","),
        });
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(vector.headers)) {
          headers[name] = Array.isArray(value) ? value.join(", ") : value;
        }
        const body = Buffer.from(vector.bodyBase64, "base64");
        const res = await mf.dispatchFetch(`${ORIGIN}/vectors?${query}`, {
          method: "POST",
          body,
          headers,
        });
        const json = (await res.json()) as { error?: string };
        if (vector.expect === "ok") {
          // Verified: the answer depends only on whether the body is an event.
          let parseError: string | undefined;
          try {
            parseEvent(new Uint8Array(body));
          } catch (error) {
            parseError = (error as { code: string }).code;
          }
          expect({ status: res.status, error: json.error }).toEqual(
            parseError === undefined
              ? { status: 200, error: undefined }
              : { status: 400, error: parseError },
          );
        } else {
          expect({ status: res.status, error: json.error }).toEqual({
            status: 401,
            error: vector.expect,
          });
        }
      },
    );
  });
});
