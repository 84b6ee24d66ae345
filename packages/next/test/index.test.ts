import type { IncomingMessage } from "node:http";
import { send } from "@mappa-webhooks/conformance";
import { signPayload } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMappaPagesHandler, createMappaWebhookHandler } from "../src/index.js";
import { type Served, serve } from "./serve.js";

const SECRET = "whsec_next_unit";
let sequence = 0;

function reportCompleted(id = `evt_next_${++sequence}_${Date.now()}`): string {
  return JSON.stringify({
    id,
    type: "report.completed",
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: `job_${id}`, reportId: `rep_${id}`, status: "completed" },
  });
}

async function signedRequest(body: string, url = "http://localhost/webhooks/mappa") {
  return new Request(url, {
    method: "POST",
    body,
    headers: {
      "content-type": "application/json",
      "mappa-signature": await signPayload({ payload: body, secret: SECRET }),
    },
  });
}

describe("createMappaWebhookHandler", () => {
  it("answers a Fetch Request and passes it to handlers", async () => {
    const seen: Array<{ id: string | undefined; url: string }> = [];
    const POST = createMappaWebhookHandler({
      secret: SECRET,
      on: {
        "report.completed": (event, request) => void seen.push({ id: event.id, url: request.url }),
      },
    });
    const response = await POST(await signedRequest(reportCompleted("evt_ctx")));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ received: true });
    expect(seen).toEqual([{ id: "evt_ctx", url: "http://localhost/webhooks/mappa" }]);
  });

  it("answers 401 for a tampered body", async () => {
    const POST = createMappaWebhookHandler({ secret: SECRET });
    const body = reportCompleted();
    const signed = await signedRequest(body);
    const tampered = new Request(signed.url, {
      method: "POST",
      body: body.replace('"completed"', '"succeeded"'),
      headers: signed.headers,
    });
    const response = await POST(tampered);
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: "signature_mismatch" });
  });

  it("hands ack-first work to the given waitUntil", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let finished = false;
    const kept: Promise<unknown>[] = [];
    const POST = createMappaWebhookHandler({
      secret: SECRET,
      ack: "first",
      waitUntil: (promise) => void kept.push(promise),
      on: {
        "report.completed": async () => {
          await gate;
          finished = true;
        },
      },
    });
    const response = await POST(await signedRequest(reportCompleted()));
    expect(response.status).toBe(200);
    expect(kept).toHaveLength(1);
    expect(finished).toBe(false);
    release();
    await Promise.all(kept);
    expect(finished).toBe(true);
  });

  it("acks first outside a Next request scope (after() unavailable) and still runs handlers", async () => {
    let handled: (id: string | undefined) => void = () => {};
    const done = new Promise<string | undefined>((resolve) => {
      handled = resolve;
    });
    const POST = createMappaWebhookHandler({
      secret: SECRET,
      ack: "first",
      on: { "report.completed": (event) => handled(event.id) },
    });
    const response = await POST(await signedRequest(reportCompleted("evt_after")));
    expect(response.status).toBe(200);
    expect(await done).toBe("evt_after");
  });

  it("carries itself as every method, so exported methods get the JSON 405 with Allow: POST", async () => {
    const handler = createMappaWebhookHandler({ secret: SECRET });
    const { GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE } = handler;
    expect(POST).toBe(handler);
    const exported = { GET, HEAD, OPTIONS, PUT, PATCH, DELETE };
    for (const [method, route] of Object.entries(exported)) {
      const response = await route(new Request("http://localhost/webhooks/mappa", { method }));
      expect(response.status, method).toBe(405);
      expect(response.headers.get("allow"), method).toBe("POST");
      if (method !== "HEAD") {
        expect(await response.json()).toMatchObject({ error: "method_not_allowed" });
      }
    }
  });

  it("does not need the secret until the first request (next build evaluates routes)", async () => {
    const POST = createMappaWebhookHandler({
      secret: process.env.MAPPA_SECRET_THAT_IS_NOT_SET as string,
    });
    await expect(POST(await signedRequest(reportCompleted()))).rejects.toMatchObject({
      code: "missing_secret",
    });
  });

  it("rejects invalid options at once when the secret is set", () => {
    expect(() => createMappaWebhookHandler({ secret: SECRET, maxBodyBytes: -1 })).toThrow(
      expect.objectContaining({ code: "invalid_options" }),
    );
  });
});

describe("createMappaWebhookHandler over HTTP", () => {
  it("answers 500 body_already_parsed, not handler_failed, when the body was read before it", async () => {
    const errors: Array<{ code: string; phase: string; message: string }> = [];
    let ran = 0;
    const POST = createMappaWebhookHandler({
      secret: SECRET,
      on: { "report.completed": () => void ran++ },
      onError: (error, info) =>
        void errors.push({ code: error.code, phase: info.phase, message: error.message }),
    });
    const served = await serve({
      // A route that reads the body for itself before handing the request on.
      "/webhooks/mappa": async (request) => {
        await request.text();
        return POST(request);
      },
    });
    try {
      const body = reportCompleted();
      const response = await send(`${served.origin}/webhooks/mappa`, {
        headers: {
          "content-type": "application/json",
          "mappa-signature": await signPayload({ payload: body, secret: SECRET }),
        },
        body,
      });
      expect(response.status).toBe(500);
      expect(JSON.parse(response.body)).toEqual({
        error: "body_already_parsed",
        fix: expect.stringMatching(/^Do not call request\.json\(\)/),
      });
      expect(errors.map((e) => [e.code, e.phase])).toEqual([["body_already_parsed", "request"]]);
      expect(errors[0]?.message).toMatch(/before handing the request to the Mappa handler/);
      expect(ran).toBe(0);
      expect(served.errors).toEqual([]);
    } finally {
      await served.close();
    }
  });
});

describe("createMappaPagesHandler over HTTP", () => {
  let served: Served;
  const contexts: string[] = [];

  beforeAll(async () => {
    const handler = createMappaPagesHandler({
      secret: SECRET,
      on: {
        "report.completed": (_event, req: IncomingMessage) => void contexts.push(req.url ?? ""),
      },
    });
    served = await serve({
      "/api/webhooks/mappa": { api: handler },
      // What Next's default body parser does before calling the route: drain and parse.
      "/api/parsed": {
        api: async (req, res) => {
          const chunks: Buffer[] = [];
          for await (const chunk of req) chunks.push(chunk as Buffer);
          Object.assign(req, { body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
          await handler(req, res);
        },
      },
    });
  });
  afterAll(() => served.close());

  async function deliver(path: string, body: string) {
    return send(`${served.origin}${path}`, {
      headers: {
        "content-type": "application/json",
        "mappa-signature": await signPayload({ payload: body, secret: SECRET }),
      },
      body,
    });
  }

  it("verifies the raw body and passes the Node request to handlers", async () => {
    const response = await deliver("/api/webhooks/mappa", reportCompleted());
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ received: true });
    expect(contexts).toEqual(["/api/webhooks/mappa"]);
  });

  it("answers 500 body_already_parsed, naming the fix, when the body parser ran", async () => {
    const errors: string[] = [];
    const handler = createMappaPagesHandler({
      secret: SECRET,
      onError: (error) => void errors.push(error.message),
    });
    const parsed = await serve({
      "/api/parsed": {
        api: async (req, res) => {
          for await (const _chunk of req) {
            // drained, as Next's body parser does
          }
          Object.assign(req, { body: { already: "parsed" } });
          await handler(req, res);
        },
      },
    });
    try {
      const body = reportCompleted();
      const response = await send(`${parsed.origin}/api/parsed`, {
        headers: { "mappa-signature": await signPayload({ payload: body, secret: SECRET }) },
        body,
      });
      expect(response.status).toBe(500);
      expect(JSON.parse(response.body)).toEqual({
        error: "body_already_parsed",
        fix: "Add `export const config = { api: { bodyParser: false } }` to this API route.",
      });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain("export const config = { api: { bodyParser: false } }");
    } finally {
      await parsed.close();
    }
    const viaParser = await deliver("/api/parsed", reportCompleted());
    expect(viaParser.status).toBe(500);
  });
});
