// Bounds: total deadlines for an app or endpoint that drips its answer, a stalled inspector
// reader, the --save file, and control characters from a payload on the terminal.
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSignedDelivery, createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Running, run, SECRET, startListen } from "./helpers.js";
import { startInspecting } from "./inspector-helpers.js";

const servers: Server[] = [];
const listeners: Running[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "mappa-cli-bounds-"));
});
afterAll(async () => {
  await Promise.all(listeners.map((listener) => listener.stop()));
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

/** An app that answers at once, then sends one byte every 100 ms and never ends. */
async function drippingApp(): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/plain" });
      const timer = setInterval(() => res.write("."), 100);
      res.on("close", () => clearInterval(timer));
    });
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mappa`;
}

describe("total deadlines", () => {
  it("listen --forward-timeout ends an app answer that drips forever: 504 to the sender", async () => {
    const app = await drippingApp();
    const { listener, url } = await startListen([
      "--forward-to",
      app,
      "--forward-timeout",
      "1500",
      "--no-inspector",
    ]);
    listeners.push(listener);
    const { body, headers } = await createSignedDelivery(createTestEvent("report.completed"), {
      secret: SECRET,
    });
    // Bounded by the test's timeout: without a total deadline this never answers.
    const response = await fetch(url, { method: "POST", body, headers });
    expect(response.status).toBe(504);
    expect(await response.json()).toMatchObject({ error: "app_timeout" });
    await listener.waitFor(/→ app unreachable: no answer in time \(answered 504\)$/);
  });

  it("doctor --timeout ends an endpoint answer that drips forever", async () => {
    const app = await drippingApp();
    const result = await run(["doctor", app, "--secret", SECRET, "--timeout", "1000"], {
      timeoutMs: 50_000,
    });
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(
      /It does not answer in time: 4 requests got no complete answer within 1 s/,
    );
  });
});

describe("the inspector's live stream", () => {
  it("cuts off a reader that never reads, while a reading one gets every delivery", async () => {
    const { listener, url, inspector } = await startInspecting(["--keep", "5"]);
    listeners.push(listener);
    const { host } = new URL(inspector);
    // A reader that sends its request and never reads a byte of the answer.
    const stalled = connect({ host: "127.0.0.1", port: Number(new URL(inspector).port) });
    await once(stalled, "connect");
    stalled.pause();
    stalled.on("error", () => undefined);
    stalled.write(`GET /api/stream HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`);
    // A reader that reads.
    let healthyBytes = 0;
    let healthyDeliveries = 0;
    const healthy = await fetch(new URL("/api/stream", inspector));
    const reader = (healthy.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let tail = "";
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        healthyBytes += value.byteLength;
        // Shorter than the marker, so a marker is never counted twice, nor missed across chunks.
        const text = tail + decoder.decode(value, { stream: true });
        healthyDeliveries += text.split("event: delivery\n").length - 1;
        tail = text.slice(-15);
      }
    })();

    // Unsigned posts whose claimed type is 100 KB: each one is ~200 KB on every stream.
    const count = 250;
    const body = JSON.stringify({ type: `x${"y".repeat(100_000)}`, id: "evt_big" });
    for (let i = 0; i < count; i++) {
      const response = await fetch(url, {
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
      });
      expect(response.status).toBe(401);
    }
    const deadline = Date.now() + 30_000;
    while (healthyDeliveries < count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(healthyDeliveries).toBe(count);

    // Now read what the stalled reader was sent: the server hung up on it long before the end.
    let stalledBytes = 0;
    stalled.on("data", (chunk: Buffer) => {
      stalledBytes += chunk.byteLength;
    });
    stalled.resume();
    const ended = await Promise.race([
      once(stalled, "close").then(() => true),
      new Promise((resolve) => setTimeout(() => resolve(false), 30_000)),
    ]);
    expect(ended).toBe(true);
    expect(stalledBytes).toBeLessThan(healthyBytes / 2);
    await reader.cancel();
    await reading.catch(() => undefined);
  });
});

describe("listen --save", () => {
  it("keeps deliveries no secret signed out of the file unless --save-unsigned", async () => {
    const file = join(dir, "signed-only.jsonl");
    const { listener, url } = await startListen(["--save", file, "--no-inspector"]);
    listeners.push(listener);
    for (let i = 0; i < 3; i++) {
      await fetch(url, { method: "POST", body: '{"type":"report.completed"}' });
    }
    const forged = await createSignedDelivery(createTestEvent("report.completed"), {
      secret: "whsec_someone_else",
    });
    await fetch(url, { method: "POST", body: forged.body, headers: forged.headers });
    const event = createTestEvent("report.completed");
    const signed = await createSignedDelivery(event, { secret: SECRET });
    await fetch(url, { method: "POST", body: signed.body, headers: signed.headers });
    // An old signature by our secret is genuine: it is saved.
    const old = JSON.stringify(createTestEvent("report.failed"));
    const oldHeader = await signPayload({ payload: old, secret: SECRET, timestamp: 1_700_000_000 });
    await fetch(url, { method: "POST", body: old, headers: { "mappa-signature": oldHeader } });
    await listener.waitFor(/timestamp_outside_tolerance/);
    // Saved after the answer went out: wait (bounded) for the two lines to be written.
    const read = () =>
      readFileSync(file, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as { bodyText: string });
    const deadline = Date.now() + 20_000;
    while (read().length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const lines = read();
    expect(lines.map((line) => line.bodyText)).toEqual([signed.body, old]);
  });

  it("stops at --save-max, says so once, and saves unsigned ones with --save-unsigned", async () => {
    const file = join(dir, "bounded.jsonl");
    writeFileSync(file, "");
    const { listener, url } = await startListen([
      "--save",
      file,
      "--save-unsigned",
      "--save-max",
      "0.05",
      "--no-inspector",
    ]);
    listeners.push(listener);
    const body = JSON.stringify({ type: "report.completed", pad: "z".repeat(4_000) });
    for (let i = 0; i < 40; i++) await fetch(url, { method: "POST", body });
    await listener.waitFor(/reached 0\.05 MiB \(--save-max\): later deliveries are not saved$/);
    const size = statSync(file).size;
    expect(size).toBeLessThanOrEqual(0.05 * 1024 * 1024);
    expect(size).toBeGreaterThan(0);
    expect(listener.lines.filter((line) => line.includes("--save-max")).length).toBe(1);
  });
});

describe("control characters from a payload", () => {
  const nasty = "\u001b[2J\u001b]0;owned\u0007\r\u202e";
  it("listen prints a verified event's fields escaped", async () => {
    const { listener, url } = await startListen(["--no-inspector"]);
    listeners.push(listener);
    const event = createTestEvent("report.completed", {
      id: `evt_${nasty}`,
      data: { jobId: `job${nasty}` },
    });
    const { body, headers } = await createSignedDelivery(event, { secret: SECRET });
    expect((await fetch(url, { method: "POST", body, headers })).status).toBe(200);
    const line = await listener.waitFor(/evt_\\x1b/);
    expect(line).toContain("evt_\\x1b[2J\\x1b]0;owned\\x07\\x0d\\u202e");
    await listener.waitFor(/job=job\\x1b\[2J/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them
    expect(listener.lines.join("\n")).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
  });

  it("verify prints them escaped, also for a capture whose signature does not match", async () => {
    const file = join(dir, "nasty.json");
    const body = JSON.stringify(createTestEvent("report.completed", { id: `evt_${nasty}` }));
    writeFileSync(file, body);
    const header = await signPayload({ payload: body, secret: "whsec_other" });
    const result = await run([
      "verify",
      "--header",
      header,
      "--body-file",
      file,
      "--secret",
      SECRET,
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("evt_\\x1b[2J");
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them
    expect(result.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f\u202e]/);
  });

  it("trigger prints an answer's error code escaped", async () => {
    const server = createServer((req, res) => {
      req.resume();
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `boom${nasty}` }));
    });
    servers.push(server);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const target = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mappa`;
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      target,
      "--secret",
      SECRET,
      "--no-retry",
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("500 boom\\x1b[2J");
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them
    expect(result.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f\u202e]/);
  });
});
