import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { MappaEvent, MappaWebhookError } from "@mappa-webhooks/core";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MappaHonoOptions, type MappaWebhookVariables, mappaWebhook } from "../src/index.js";
import { reportCompleted, SECRET, signedHeaders } from "./helpers.js";

const URL_BASE = "http://localhost";

async function post(
  app: Hono<{ Variables: MappaWebhookVariables }>,
  path: string,
  body: string | Uint8Array<ArrayBuffer>,
  headers?: Record<string, string>,
) {
  return app.request(`${URL_BASE}${path}`, {
    method: "POST",
    body,
    headers: headers ?? (await signedHeaders(body)),
  });
}

function appWith(options: Partial<MappaHonoOptions> = {}) {
  const seen: MappaEvent[] = [];
  const app = new Hono<{ Variables: MappaWebhookVariables }>();
  const webhook = mappaWebhook({
    secret: SECRET,
    on: { "report.completed": (event) => void seen.push(event) },
    ...options,
  });
  app.use("/webhooks/mappa", webhook);
  app.post("/hooks/post", webhook);
  return { app, seen };
}

describe("mappaWebhook (app.request)", () => {
  it("answers 200 for a signed delivery with app.use and with app.post", async () => {
    const { app, seen } = appWith();
    for (const path of ["/webhooks/mappa", "/hooks/post"]) {
      const res = await post(app, path, reportCompleted());
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ received: true });
      expect(res.headers.get("content-type")).toContain("application/json");
    }
    expect(seen.map((event) => event.type)).toEqual(["report.completed", "report.completed"]);
  });

  it("passes the Hono context to handlers", async () => {
    const paths: string[] = [];
    const { app } = appWith({
      on: { "report.completed": (_event, c) => void paths.push(c.req.path) },
    });
    expect((await post(app, "/webhooks/mappa", reportCompleted())).status).toBe(200);
    expect(paths).toEqual(["/webhooks/mappa"]);
  });

  it("answers 401 for a tampered body and does not run handlers", async () => {
    const { app, seen } = appWith();
    const body = reportCompleted();
    const headers = await signedHeaders(body);
    const res = await post(app, "/webhooks/mappa", body.replace("rep_", "rXp_"), headers);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "signature_mismatch" });
    expect(seen).toHaveLength(0);
  });

  it("answers 401 missing_signature without the header", async () => {
    const { app } = appWith();
    const res = await post(app, "/webhooks/mappa", reportCompleted(), {});
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "missing_signature" });
  });

  it("answers 405 with Allow: POST for other methods on a use() path", async () => {
    const { app } = appWith();
    const res = await app.request(`${URL_BASE}/webhooks/mappa`, { method: "GET" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    expect((await res.json()) as object).toMatchObject({ error: "method_not_allowed" });
  });

  it("answers other methods 405 JSON with app.all, while app.post leaves them to Hono's 404", async () => {
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    app.all("/all", mappaWebhook({ secret: SECRET }));
    app.post("/post-only", mappaWebhook({ secret: SECRET }));
    for (const method of ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]) {
      const all = await app.request(`${URL_BASE}/all`, { method });
      expect(all.status, method).toBe(405);
      expect(all.headers.get("allow"), method).toBe("POST");
      expect((await all.json()) as object).toMatchObject({ error: "method_not_allowed" });
      const postOnly = await app.request(`${URL_BASE}/post-only`, { method });
      expect(postOnly.status, method).toBe(404);
    }
    expect((await post(app, "/all", reportCompleted())).status).toBe(200);
  });

  it("handles a duplicate delivery once", async () => {
    const { app, seen } = appWith();
    const body = reportCompleted();
    const headers = await signedHeaders(body);
    const first = await post(app, "/webhooks/mappa", body, headers);
    const second = await post(app, "/webhooks/mappa", body, headers);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ received: true, duplicate: true });
    expect(seen).toHaveLength(1);
  });

  it("answers 413 over maxBodyBytes, by Content-Length and while streaming", async () => {
    const { app, seen } = appWith({ maxBodyBytes: 64 });
    const body = reportCompleted();
    expect(body.length).toBeGreaterThan(64);
    const declared = await post(app, "/webhooks/mappa", body);
    expect(declared.status).toBe(413);
    expect((await declared.json()) as object).toMatchObject({ error: "payload_too_large" });

    // No Content-Length: the limit is enforced while reading the stream.
    const bytes = new TextEncoder().encode(body);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let offset = 0; offset < bytes.byteLength; offset += 16) {
          controller.enqueue(bytes.slice(offset, offset + 16));
        }
        controller.close();
      },
    });
    const streamed = await app.request(`${URL_BASE}/webhooks/mappa`, {
      method: "POST",
      body: stream,
      headers: await signedHeaders(body),
      duplex: "half",
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(seen).toHaveLength(0);
  });

  it("answers 400 for a signed body that is not JSON", async () => {
    const { app } = appWith();
    const res = await post(app, "/webhooks/mappa", "not json");
    expect(res.status).toBe(400);
    expect((await res.json()) as object).toMatchObject({ error: "invalid_json" });
  });

  it("verifies the exact bytes, even when they are not valid UTF-8", async () => {
    const { app } = appWith();
    const bytes = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]);
    const res = await post(app, "/webhooks/mappa", bytes);
    // 400, not 401: the signature over the raw bytes matched, the body is just not JSON.
    expect(res.status).toBe(400);
    expect((await res.json()) as object).toMatchObject({ error: "invalid_json" });
  });

  it("answers 200 for unknown event types and calls onUnknown", async () => {
    const unknownTypes: string[] = [];
    const { app } = appWith({ onUnknown: (event) => void unknownTypes.push(event.type) });
    const body = JSON.stringify({ id: "evt_unknown_1", type: "report.archived", data: {} });
    const res = await post(app, "/webhooks/mappa", body);
    expect(res.status).toBe(200);
    expect(unknownTypes).toEqual(["report.archived"]);
  });

  it("answers 500 when a handler throws, and the retry runs the handler again", async () => {
    let calls = 0;
    const errors: string[] = [];
    const { app } = appWith({
      on: {
        "report.completed": () => {
          calls++;
          if (calls === 1) throw new Error("database down");
        },
      },
      onError: (error: MappaWebhookError) => void errors.push(error.code),
    });
    const body = reportCompleted();
    const headers = await signedHeaders(body);
    const first = await post(app, "/webhooks/mappa", body, headers);
    expect(first.status).toBe(500);
    expect(await first.json()).toEqual({ error: "handler_failed" });
    const retry = await post(app, "/webhooks/mappa", body, headers);
    expect(retry.status).toBe(200);
    expect(calls).toBe(2);
    expect(errors).toEqual(["handler_failed"]);
  });

  it("sets c.get('mappaEvent') before the on handlers run", async () => {
    const seen: Array<string | undefined> = [];
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    app.post(
      "/webhooks/mappa",
      mappaWebhook({
        secret: SECRET,
        on: { "report.completed": (_event, c) => void seen.push(c.get("mappaEvent")?.id) },
      }),
    );
    const res = await post(app, "/webhooks/mappa", reportCompleted("evt_before_1"));
    expect(res.status).toBe(200);
    expect(seen).toEqual(["evt_before_1"]);
  });

  it("sets c.get('mappaEvent') and lets later handlers read the body (mode: next)", async () => {
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    const body = reportCompleted("evt_next_1");
    app.post("/webhooks/mappa", mappaWebhook({ secret: SECRET, mode: "next" }), async (c) => {
      const event = c.get("mappaEvent");
      const json = (await c.req.json()) as { id: string };
      const text = await c.req.text();
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      return c.json({
        eventId: event.id,
        type: event.type,
        jsonId: json.id,
        textMatches: text === body,
        byteLength: bytes.byteLength,
      });
    });
    const res = await post(app, "/webhooks/mappa", body);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      eventId: "evt_next_1",
      type: "report.completed",
      jsonId: "evt_next_1",
      textMatches: true,
      byteLength: new TextEncoder().encode(body).byteLength,
    });
  });

  it("in mode next, answers failures and duplicates itself without calling next()", async () => {
    let downstream = 0;
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    app.post("/webhooks/mappa", mappaWebhook({ secret: SECRET, mode: "next" }), (c) => {
      downstream++;
      return c.text("downstream");
    });
    const body = reportCompleted();
    const headers = await signedHeaders(body);
    expect(await (await post(app, "/webhooks/mappa", body, headers)).text()).toBe("downstream");
    const duplicate = await post(app, "/webhooks/mappa", body, headers);
    expect(await duplicate.json()).toEqual({ received: true, duplicate: true });
    const tampered = await post(app, "/webhooks/mappa", `${body} `, headers);
    expect(tampered.status).toBe(401);
    expect(downstream).toBe(1);
  });

  it("keeps the event on the context in the default mode, for middleware around it", async () => {
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    const logged: string[] = [];
    app.use("/webhooks/mappa", async (c, next) => {
      await next();
      logged.push(`${c.res.status} ${c.get("mappaEvent")?.type}`);
    });
    app.use("/webhooks/mappa", mappaWebhook({ secret: SECRET }));
    expect((await post(app, "/webhooks/mappa", reportCompleted())).status).toBe(200);
    expect(logged).toEqual(["200 report.completed"]);
  });

  it("answers 500 body_already_parsed when the raw stream was consumed before", async () => {
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    app.use("*", async (c, next) => {
      await c.req.raw.text();
      await next();
    });
    app.use("/webhooks/mappa", mappaWebhook({ secret: SECRET }));
    const res = await post(app, "/webhooks/mappa", reportCompleted());
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({
      error: "body_already_parsed",
      fix: expect.stringMatching(/^Register mappaWebhook\(\) before that middleware/),
    });
  });

  it("acks first and hands the handlers to c.executionCtx.waitUntil when present", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let finished = false;
    const { app } = appWith({
      ack: "first",
      on: {
        "report.completed": async () => {
          await gate;
          finished = true;
        },
      },
    });
    const background: Promise<unknown>[] = [];
    const executionCtx = {
      waitUntil: (promise: Promise<unknown>) => void background.push(promise),
      passThroughOnException: () => {},
      props: {},
    };
    const body = reportCompleted();
    const request = new Request(`${URL_BASE}/webhooks/mappa`, {
      method: "POST",
      body,
      headers: await signedHeaders(body),
    });
    const res = await app.fetch(request, {}, executionCtx);
    expect(res.status).toBe(200);
    expect(finished).toBe(false);
    expect(background).toHaveLength(1);
    release();
    await Promise.all(background);
    expect(finished).toBe(true);
  });

  it("acks first without an ExecutionContext (Node): handlers still run", async () => {
    let done: (type: string) => void = () => {};
    const handled = new Promise<string>((resolve) => {
      done = resolve;
    });
    const { app } = appWith({ ack: "first", on: { "report.completed": (e) => done(e.type) } });
    const res = await post(app, "/webhooks/mappa", reportCompleted());
    expect(res.status).toBe(200);
    expect(await handled).toBe("report.completed");
  });

  it("rejects an unknown mode", () => {
    expect(() => mappaWebhook({ secret: SECRET, mode: "later" as "next" })).toThrow(
      expect.objectContaining({ code: "invalid_options" }),
    );
  });
});

describe("mappaWebhook on @hono/node-server", () => {
  let baseUrl = "";
  let close: () => Promise<void> = async () => {};
  const seen: string[] = [];

  beforeAll(async () => {
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    app.post(
      "/webhooks/mappa",
      mappaWebhook({
        secret: SECRET,
        mode: "next",
        maxBodyBytes: 4096,
        on: { "report.completed": (event) => void seen.push(event.id as string) },
      }),
      async (c) => c.json({ id: c.get("mappaEvent").id, body: await c.req.text() }),
    );
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
        resolve(started),
      );
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => new Promise((resolve) => server.close(() => resolve()));
  });
  afterAll(() => close());

  it("verifies real HTTP deliveries and hands the body on", async () => {
    const body = reportCompleted("evt_node_server_1");
    const res = await fetch(`${baseUrl}/webhooks/mappa`, {
      method: "POST",
      body,
      headers: await signedHeaders(body),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: "evt_node_server_1", body });
    expect(seen).toEqual(["evt_node_server_1"]);
  });

  it("answers 401 and 413 over HTTP", async () => {
    const body = reportCompleted();
    const headers = await signedHeaders(body);
    const tampered = await fetch(`${baseUrl}/webhooks/mappa`, {
      method: "POST",
      body: `${body}\n`,
      headers,
    });
    expect(tampered.status).toBe(401);
    const large = `{"pad":"${"x".repeat(8192)}"}`;
    const tooLarge = await fetch(`${baseUrl}/webhooks/mappa`, {
      method: "POST",
      body: large,
      headers: await signedHeaders(large),
    });
    expect(tooLarge.status).toBe(413);
  });
});

describe("a body read before mappaWebhook, over HTTP", () => {
  type Read = "text" | "json" | "arrayBuffer" | "bytes" | "blob" | "text+arrayBuffer" | "none";
  let baseUrl = "";
  let close: () => Promise<void> = async () => {};
  const seen: Array<{ id: string | undefined; bytes: number }> = [];
  const errors: Array<{ code: string; message: string }> = [];

  beforeAll(async () => {
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    // A middleware that reads the body the way the `x-read` header says, as apps do.
    app.use("/webhooks/mappa", async (c, next) => {
      const read = (c.req.header("x-read") ?? "none") as Read;
      if (read === "text" || read === "text+arrayBuffer") await c.req.text();
      if (read === "json") await c.req.json().catch(() => undefined);
      if (read === "arrayBuffer" || read === "text+arrayBuffer") await c.req.arrayBuffer();
      if (read === "bytes") await c.req.bytes();
      if (read === "blob") await c.req.blob();
      await next();
    });
    app.use(
      "/webhooks/mappa",
      mappaWebhook({
        secret: SECRET,
        idempotency: false,
        on: {
          "report.completed": async (event, c) =>
            void seen.push({ id: event.id, bytes: (await c.req.arrayBuffer()).byteLength }),
        },
        onError: (error) => void errors.push({ code: error.code, message: error.message }),
      }),
    );
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
        resolve(started),
      );
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => new Promise((resolve) => server.close(() => resolve()));
  });
  afterAll(() => close());

  const BOM = new Uint8Array([0xef, 0xbb, 0xbf]);
  const utf8 = (text: string) => new TextEncoder().encode(text);
  const concat = (...parts: Uint8Array[]): Uint8Array<ArrayBuffer> => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.byteLength;
    }
    return out;
  };
  // A report.completed whose reportId holds a byte that is not valid UTF-8.
  const withInvalidByte = (id: string) => {
    const [head, tail] = reportCompleted(id).split("rep_");
    return concat(utf8(`${head}rep_`), new Uint8Array([0xff]), utf8(tail as string));
  };

  async function deliver(
    read: Read,
    sent: Uint8Array<ArrayBuffer>,
    signed: Uint8Array<ArrayBuffer> = sent,
  ) {
    seen.length = 0;
    errors.length = 0;
    const response = await fetch(`${baseUrl}/webhooks/mappa`, {
      method: "POST",
      body: sent,
      headers: { ...(await signedHeaders(signed)), "x-read": read },
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  }

  it.each([
    { read: "text", label: "c.req.text()" },
    { read: "json", label: "c.req.json()" },
    { read: "text+arrayBuffer", label: "c.req.text() then c.req.arrayBuffer() (re-encoded)" },
  ] as const)("answers 500 body_already_parsed, naming the fix, after $label", async ({ read }) => {
    const body = utf8(reportCompleted());
    expect(await deliver(read, body)).toEqual({
      status: 500,
      json: {
        error: "body_already_parsed",
        fix: expect.stringContaining("c.req.arrayBuffer()"),
      },
    });
    expect(errors.map((e) => e.code)).toEqual(["body_already_parsed"]);
    expect(errors[0]?.message).toContain("c.req.arrayBuffer()");
    expect(errors[0]?.message).toContain("before");
    expect(seen).toEqual([]);
  });

  it("never accepts a BOM added to a body signed without one (decoded text hides it)", async () => {
    const body = utf8(reportCompleted());
    const result = await deliver("text", concat(BOM, body), body);
    expect(result.status).not.toBe(200);
    expect(seen).toEqual([]);
  });

  it.each(["arrayBuffer", "bytes", "blob"] as const)(
    "verifies the exact bytes Hono cached after c.req.%s()",
    async (read) => {
      const id = `evt_cached_${read}`;
      const body = utf8(reportCompleted(id));
      expect(await deliver(read, body)).toEqual({ status: 200, json: { received: true } });
      expect(seen).toEqual([{ id, bytes: body.byteLength }]);
      // The same bytes with a BOM added after signing are refused.
      expect((await deliver(read, concat(BOM, body), body)).status).toBe(401);
    },
  );

  it.each(["none", "arrayBuffer"] as const)(
    "accepts a validly signed body with a BOM or an invalid UTF-8 byte (read first: %s)",
    async (read) => {
      const withBom = concat(BOM, utf8(reportCompleted("evt_bom")));
      expect(await deliver(read, withBom)).toEqual({ status: 200, json: { received: true } });
      expect(seen).toEqual([{ id: "evt_bom", bytes: withBom.byteLength }]);
      const invalid = withInvalidByte("evt_invalid_utf8");
      expect(await deliver(read, invalid)).toEqual({ status: 200, json: { received: true } });
      expect(seen).toEqual([{ id: "evt_invalid_utf8", bytes: invalid.byteLength }]);
    },
  );
});
