// What trigger, listen --forward-to and doctor say about a receiver's answer: the fix for the
// usual set-up mistake (a JSON body parser before the webhook route), and duplicates.
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMappaWebhooks, readBodyWithLimit } from "@mappa-webhooks/core";
import { createSignedDelivery, createTestEvent } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BODY_ALREADY_PARSED_FIX } from "../src/answers.js";
import { type Running, run, SECRET, startListen } from "./helpers.js";

/** A JSON body parser as express.json() is: it reads the whole request stream first. */
async function parseJsonFirst(req: IncomingMessage): Promise<void> {
  for await (const _chunk of req) {
    // consumed, as a body parser does
  }
}

/**
 * A receiver built on the core, with a body parser mounted before it: the core finds the
 * stream already read and answers 500 body_already_parsed. `fix`: the answer's `fix` field as
 * the core sends it (`"core"`), none (`undefined`, as older receivers answer), or this text.
 */
async function parsedFirstApp(fix?: string): Promise<{ url: string; server: Server }> {
  const webhooks = createMappaWebhooks({ secret: SECRET });
  const server = createServer((req, res) => {
    void (async () => {
      await parseJsonFirst(req);
      let answer: { status: number; headers: Record<string, string>; body: string };
      try {
        await readBodyWithLimit(req, webhooks.maxBodyBytes);
        answer = { status: 200, headers: {}, body: "{}" };
      } catch (error) {
        answer = webhooks.errorResponse(error);
      }
      const { fix: coreFix, ...rest } = JSON.parse(answer.body) as Record<string, unknown>;
      const body =
        fix === "core"
          ? answer.body
          : JSON.stringify(fix === undefined ? rest : { ...rest, fix: fix ?? coreFix });
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(body);
    })();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/webhooks/mappa`, server };
}

const servers: Server[] = [];
const listeners: Running[] = [];
let plain: string;
let withFix: string;
let coreFixUrl: string;
const OWN_FIX = "register express.raw() for /webhooks/mappa before express.json()";

beforeAll(async () => {
  const a = await parsedFirstApp();
  const b = await parsedFirstApp(OWN_FIX);
  const c = await parsedFirstApp("core");
  servers.push(a.server, b.server, c.server);
  plain = a.url;
  withFix = b.url;
  coreFixUrl = c.url;
});
afterAll(async () => {
  await Promise.all(listeners.map((listener) => listener.stop()));
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
});

describe("body_already_parsed", () => {
  it("really is what the core answers when a parser read the body first", async () => {
    const { body, headers } = await createSignedDelivery(createTestEvent("report.completed"), {
      secret: SECRET,
    });
    const response = await fetch(coreFixUrl, { method: "POST", body, headers });
    expect(response.status).toBe(500);
    expect(await response.json()).toMatchObject({ error: "body_already_parsed" });
  });

  it("trigger shows the core's own fix when the answer carries one", async () => {
    const { body, headers } = await createSignedDelivery(createTestEvent("report.completed"), {
      secret: SECRET,
    });
    const answer = (await (await fetch(coreFixUrl, { method: "POST", body, headers })).json()) as {
      fix?: string;
    };
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      coreFixUrl,
      "--secret",
      SECRET,
      "--no-retry",
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(
      `hint: body_already_parsed: ${answer.fix ?? BODY_ALREADY_PARSED_FIX}`,
    );
  });

  it("trigger names the fix, even with --no-retry", async () => {
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      plain,
      "--secret",
      SECRET,
      "--no-retry",
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("✗ attempt 1/1  500 body_already_parsed");
    expect(result.stdout).toContain(`hint: body_already_parsed: ${BODY_ALREADY_PARSED_FIX}`);
  });

  it("trigger prefers the receiver's own fix when its answer has one, and says it once", async () => {
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      withFix,
      "--secret",
      SECRET,
      "--time-scale",
      "0.0001",
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`hint: body_already_parsed: ${OWN_FIX}`);
    expect(result.stdout.split("hint: body_already_parsed").length).toBe(2);
    expect(result.stdout).not.toContain(BODY_ALREADY_PARSED_FIX);
  });

  it("listen --forward-to shows the app's answer and the fix under the delivery", async () => {
    const { listener, url } = await startListen(["--forward-to", plain, "--no-inspector"]);
    listeners.push(listener);
    const event = createTestEvent("report.completed");
    const { body, headers } = await createSignedDelivery(event, { secret: SECRET });
    const response = await fetch(url, { method: "POST", body, headers });
    expect(response.status).toBe(500);
    const line = await listener.waitFor((l) => l.includes(event.id));
    expect(line).toMatch(
      new RegExp(
        `✓ verified report\\.completed ${event.id} {2}→ app 500 body_already_parsed \\d+ ms$`,
      ),
    );
    await listener.waitFor(
      (l) => l.trim() === `hint: body_already_parsed: ${BODY_ALREADY_PARSED_FIX}`,
    );
  });

  it("listen --forward-to --json carries the fix too, the app's own when it sends one", async () => {
    const { listener, url } = await startListen([
      "--forward-to",
      withFix,
      "--no-inspector",
      "--json",
    ]);
    listeners.push(listener);
    const { body, headers } = await createSignedDelivery(createTestEvent("report.failed"), {
      secret: SECRET,
    });
    await fetch(url, { method: "POST", body, headers });
    const line = await listener.waitFor(/"kind":"delivery"/);
    expect(JSON.parse(line).forward).toMatchObject({
      status: 500,
      fix: `body_already_parsed: ${OWN_FIX}`,
    });
  });

  it("doctor names the fix instead of blaming a handler", async () => {
    const result = await run(["doctor", plain, "--secret", SECRET]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("fix: A body parser read the request before the Mappa handler");
    expect(result.stdout).not.toContain("a handler probably threw");
    expect(result.stdout).toMatch(/It cannot read the raw body \(500 body_already_parsed/);
  });
});

describe("duplicates", () => {
  it("trigger says a duplicate was already received, not that it was handled", async () => {
    const { listener, url } = await startListen(["--no-inspector"]);
    listeners.push(listener);
    const args = ["trigger", "report.completed", "--url", url, "--secret", SECRET];
    expect((await run([...args, "--id", "evt_dup_words"])).code).toBe(0);
    const second = await run([...args, "--id", "evt_dup_words"]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("200 (duplicate: already received)");
    expect(second.stdout).toContain(
      "a duplicate, the receiver already had this event and did not take it again (handled before, or stored for a worker)",
    );
    expect(second.stdout).not.toContain("already handled");
  });
});
