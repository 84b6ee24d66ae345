// The handler behind serverless-offline (v13 with the Serverless Framework v3, from the npm
// registry, fully offline): a third-party emulator builds the REST API (payload 1.0) and HTTP
// API (payload 2.0) events from real HTTP requests on 127.0.0.1 and invokes the built handler.
import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { send } from "@mappa-webhooks/conformance";
import { signPayload } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const dir = fileURLToPath(new URL("./serverless-offline/", import.meta.url));
const serverlessBin = createRequire(import.meta.url).resolve("serverless/bin/serverless.js");
const secret = "whsec_serverless_offline_e2e";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

let child: ChildProcess | undefined;
let output = "";
let baseUrl = "";

async function waitForOutput(pattern: RegExp, timeoutMs: number): Promise<void> {
  for (let waited = 0; waited < timeoutMs; waited += 50) {
    if (pattern.test(output)) return;
    if (child?.exitCode !== null) throw new Error(`serverless-offline exited:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${output}`);
}

beforeAll(async () => {
  const [httpPort, lambdaPort] = [await freePort(), await freePort()];
  child = spawn(
    process.execPath,
    [
      serverlessBin,
      "offline",
      "start",
      "--httpPort",
      String(httpPort),
      "--lambdaPort",
      String(lambdaPort),
    ],
    {
      cwd: dir,
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
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  await waitForOutput(/Server ready: http:\/\/127\.0\.0\.1:\d+/, 90_000);
  baseUrl = `http://127.0.0.1:${httpPort}`;
}, 120_000);

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    const exited = new Promise((resolve) => child?.on("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child?.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
});

async function delivery(note: string, headerName = "mappa-signature") {
  const id = `evt_sls_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const body = JSON.stringify({
    id,
    type: "report.completed",
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: "job_sls", reportId: "rep_sls", status: "completed", note },
  });
  const signature = await signPayload({ payload: body, secret });
  return { id, body, headers: { "Content-Type": "application/json", [headerName]: signature } };
}

describe.each([
  { name: "HTTP API (payload 2.0)", path: "/webhooks/mappa", source: "http-api" },
  { name: "REST API (payload 1.0)", path: "/rest/webhooks/mappa", source: "rest-api" },
])("serverless-offline $name", ({ path, source }) => {
  it("answers 200 to a signed delivery with a mixed-case header, and runs the handler once", async () => {
    const note = "Zürich — 東京 — 🎉";
    const d = await delivery(note, "Mappa-Signature");
    const first = await send(`${baseUrl}${path}`, { headers: d.headers, body: d.body });
    expect({ status: first.status, body: JSON.parse(first.body) }).toEqual({
      status: 200,
      body: { received: true },
    });
    const again = await send(`${baseUrl}${path}`, { headers: d.headers, body: d.body });
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    const logged = output.split("\n").filter((l) => l.includes(`[mappa] ${source} ${d.id}`));
    expect(logged).toEqual([`[mappa] ${source} ${d.id} note=${JSON.stringify(note)}`]);
  });

  it("answers 401 to a tampered body", async () => {
    const d = await delivery("x");
    const response = await send(`${baseUrl}${path}`, {
      headers: d.headers,
      body: d.body.replace("rep_sls", "rep_slz"),
    });
    expect(response.status).toBe(401);
    expect(JSON.parse(response.body)).toEqual({ error: "signature_mismatch" });
  });

  it("answers 405 with Allow: POST to a GET", async () => {
    const response = await send(`${baseUrl}${path}`, { method: "GET" });
    expect(response.status).toBe(405);
    expect(response.headers.allow).toBe("POST");
  });
});
