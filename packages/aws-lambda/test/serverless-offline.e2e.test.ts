// The handler behind serverless-offline (v13 with the Serverless Framework v3, from the npm
// registry, fully offline): a third-party emulator builds the REST API (payload 1.0) and HTTP
// API (payload 2.0) events from real HTTP requests on 127.0.0.1 and invokes the built handler.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { send } from "@mappa-webhooks/conformance";
import { signPayload } from "@mappa-webhooks/core";
import { type Child, freePort, sleep, startProcess } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const dir = fileURLToPath(new URL("./serverless-offline/", import.meta.url));
const serverlessBin = createRequire(import.meta.url).resolve("serverless/bin/serverless.js");
const secret = "whsec_serverless_offline_e2e";

// Readiness is awaited, not timed: the Serverless Framework loads slowly on a busy machine and
// the first invocation starts the handler's worker. The bounds are only there to end a hang.
const START_BOUND_MS = 240_000;
const REQUEST_TIMEOUT_MS = 60_000;

let child: Child | undefined;
let baseUrl = "";
const output = () => child?.output.join("\n") ?? "";

/** Until the route answers (any HTTP status: the handler ran), at most `boundMs`. */
async function untilAnswering(url: string, boundMs: number): Promise<void> {
  const deadline = Date.now() + boundMs;
  for (let attempt = 0; ; attempt++) {
    try {
      await send(url, { method: "GET", timeoutMs: REQUEST_TIMEOUT_MS });
      return;
    } catch (error) {
      if (Date.now() > deadline || child?.process.exitCode !== null) {
        throw new Error(`serverless-offline never answered ${url}: ${String(error)}\n${output()}`);
      }
      await sleep(Math.min(1000, 50 * 2 ** attempt));
    }
  }
}

beforeAll(
  async () => {
    const [httpPort, lambdaPort] = [await freePort(), await freePort()];
    child = startProcess({
      args: [
        serverlessBin,
        "offline",
        "start",
        "--httpPort",
        String(httpPort),
        "--lambdaPort",
        String(lambdaPort),
      ],
      cwd: dir,
      label: "serverless-offline",
      env: {
        ...process.env,
        MAPPA_WEBHOOK_SECRET: secret,
        SLS_TELEMETRY_DISABLED: "1",
        SLS_NOTIFICATIONS_MODE: "off",
        SLS_DEPRECATION_DISABLE: "*",
        // Never used (nothing is deployed); the framework only wants them present.
        AWS_ACCESS_KEY_ID: "offline",
        AWS_SECRET_ACCESS_KEY: "offline",
      },
    });
    await child.waitForLine(/Server ready: http:\/\/127\.0\.0\.1:\d+/, START_BOUND_MS);
    baseUrl = `http://127.0.0.1:${httpPort}`;
    // Both routes once, so the handler is loaded before the first timed-out-able delivery.
    await untilAnswering(`${baseUrl}/webhooks/mappa`, START_BOUND_MS);
    await untilAnswering(`${baseUrl}/rest/webhooks/mappa`, START_BOUND_MS);
  },
  2 * START_BOUND_MS + 60_000,
);

afterAll(async () => {
  await child?.kill("SIGTERM");
}, 30_000);

async function delivery(note: string, headerName = "mappa-signature") {
  const id = `evt_sls_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const body = JSON.stringify({
    id,
    type: "report.completed",
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: `job_${id}`, reportId: "rep_sls", status: "completed", note },
  });
  const signature = await signPayload({ payload: body, secret });
  return { id, body, headers: { "Content-Type": "application/json", [headerName]: signature } };
}

describe.each([
  { name: "HTTP API (payload 2.0)", path: "/webhooks/mappa", source: "http-api" },
  { name: "REST API (payload 1.0)", path: "/rest/webhooks/mappa", source: "rest-api" },
])("serverless-offline $name", { timeout: 3 * REQUEST_TIMEOUT_MS }, ({ path, source }) => {
  it("answers 200 to a signed delivery with a mixed-case header, and runs the handler once", async () => {
    const note = "Zürich — 東京 — 🎉";
    const d = await delivery(note, "Mappa-Signature");
    const first = await send(`${baseUrl}${path}`, {
      headers: d.headers,
      body: d.body,
      timeoutMs: REQUEST_TIMEOUT_MS,
    });
    expect({ status: first.status, body: JSON.parse(first.body) }).toEqual({
      status: 200,
      body: { received: true },
    });
    const again = await send(`${baseUrl}${path}`, {
      headers: d.headers,
      body: d.body,
      timeoutMs: REQUEST_TIMEOUT_MS,
    });
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    const logged = output()
      .split("\n")
      .filter((l) => l.includes(`[mappa] ${source} ${d.id}`));
    expect(logged).toEqual([`[mappa] ${source} ${d.id} note=${JSON.stringify(note)}`]);
  });

  it("answers 401 to a tampered body", async () => {
    const d = await delivery("x");
    const response = await send(`${baseUrl}${path}`, {
      headers: d.headers,
      body: d.body.replace("rep_sls", "rep_slz"),
      timeoutMs: REQUEST_TIMEOUT_MS,
    });
    expect(response.status).toBe(401);
    expect(JSON.parse(response.body)).toEqual({ error: "signature_mismatch" });
  });

  it("answers 405 with Allow: POST to a GET", async () => {
    const response = await send(`${baseUrl}${path}`, {
      method: "GET",
      timeoutMs: REQUEST_TIMEOUT_MS,
    });
    expect(response.status).toBe(405);
    expect(response.headers.allow).toBe("POST");
  });
});
