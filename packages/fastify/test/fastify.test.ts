import { PassThrough } from "node:stream";
import { send, streamOversized } from "@mappa-webhooks/conformance";
import type { MappaEvent, MappaWebhookError } from "@mappa-webhooks/core";
import { signPayload } from "@mappa-webhooks/core";
import Fastify, { type FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { mappaWebhookPlugin } from "../src/index.js";

const secret = "whsec_fastify_tests";
let sequence = 0;

async function delivery() {
  sequence += 1;
  const id = `evt_fastify_${sequence}`;
  const body = JSON.stringify({
    id,
    type: "report.completed",
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: `job_${sequence}`, reportId: `rep_${sequence}`, status: "completed" },
  });
  const signature = await signPayload({ payload: body, secret });
  return {
    id,
    body,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  };
}

const running: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of running.splice(0)) await app.close();
});

async function start(app: FastifyInstance): Promise<string> {
  running.push(app);
  return app.listen({ port: 0, host: "127.0.0.1" });
}

describe("mappaWebhookPlugin", () => {
  it("keeps Fastify's JSON parsing on every other route", async () => {
    const app = Fastify();
    app.post("/before", async (request) => ({ parsed: request.body }));
    await app.register(mappaWebhookPlugin, { secret });
    app.post("/after", async (request) => ({ parsed: request.body }));
    await app.register(async (child) => {
      child.post("/child", async (request) => ({ parsed: request.body }));
    });
    const base = await start(app);
    for (const path of ["/before", "/after", "/child"]) {
      const ok = await send(`${base}${path}`, {
        headers: { "content-type": "application/json" },
        body: '{"n":1}',
      });
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toEqual({ parsed: { n: 1 } });
      // Fastify's JSON parser, not a raw one: broken JSON is Fastify's 400.
      const broken = await send(`${base}${path}`, {
        headers: { "content-type": "application/json" },
        body: '{"n":',
      });
      expect(broken.status).toBe(400);
      expect(JSON.parse(broken.body).code).toBe("FST_ERR_CTP_INVALID_JSON_BODY");
      // And no catch-all leaked out of the plugin: unknown media types stay unsupported.
      const other = await send(`${base}${path}`, {
        headers: { "content-type": "application/x-mappa" },
        body: "x",
      });
      expect(other.status).toBe(415);
    }
    const { headers, body } = await delivery();
    const webhook = await send(`${base}/webhooks/mappa`, {
      headers: { ...headers, "content-type": "application/x-mappa" },
      body,
    });
    expect(webhook.status).toBe(200);
  });

  it("sets request.mappaEvent for handlers and for hooks after the answer", async () => {
    const inHandler: Array<MappaEvent | null | undefined> = [];
    const inHook: Array<{ url: string; event: MappaEvent | null | undefined }> = [];
    const app = Fastify();
    app.addHook("onResponse", async (request) => {
      inHook.push({ url: request.url, event: request.mappaEvent });
    });
    await app.register(mappaWebhookPlugin, {
      secret,
      on: {
        "report.completed": (_event, { request }) => void inHandler.push(request.mappaEvent),
      },
    });
    app.post("/api/echo", async (request) => ({ echo: request.body }));
    const base = await start(app);
    const { id, headers, body } = await delivery();
    expect((await send(`${base}/webhooks/mappa`, { headers, body })).status).toBe(200);
    expect(inHandler.map((e) => e?.id)).toEqual([id]);
    const forged = await send(`${base}/webhooks/mappa`, {
      headers,
      body: body.replace("rep_", "rex_"),
    });
    expect(forged.status).toBe(401);
    await send(`${base}/api/echo`, { headers: { "content-type": "application/json" }, body: "{}" });
    expect(inHook.map((h) => [h.url, h.event?.id ?? null])).toEqual([
      ["/webhooks/mappa", id],
      ["/webhooks/mappa", null],
      ["/api/echo", null],
    ]);
  });

  it("serves a custom path, inside a prefixed plugin, and twice with different secrets", async () => {
    const otherSecret = "whsec_second_endpoint";
    const seen: string[] = [];
    const app = Fastify();
    await app.register(
      async (api) => {
        await api.register(mappaWebhookPlugin, {
          secret,
          path: "/mappa",
          on: { "report.completed": () => void seen.push("first") },
        });
        await api.register(mappaWebhookPlugin, {
          secret: otherSecret,
          path: "/mappa-eu",
          on: { "report.completed": () => void seen.push("second") },
        });
      },
      { prefix: "/hooks" },
    );
    const base = await start(app);
    const { headers, body } = await delivery();
    expect((await send(`${base}/hooks/mappa`, { headers, body })).status).toBe(200);
    expect((await send(`${base}/hooks/mappa-eu`, { headers, body })).status).toBe(401);
    const resigned = await signPayload({ payload: body, secret: otherSecret });
    const second = await send(`${base}/hooks/mappa-eu`, {
      headers: { ...headers, "mappa-signature": resigned },
      body,
    });
    expect(second.status).toBe(200);
    expect(seen).toEqual(["first", "second"]);
    expect((await send(`${base}/webhooks/mappa`, { headers, body })).status).toBe(404);
  });

  it("honours Fastify's prefix registration option", async () => {
    const app = Fastify();
    await app.register(mappaWebhookPlugin, { secret, prefix: "/v1" });
    const base = await start(app);
    const { headers, body } = await delivery();
    expect((await send(`${base}/v1/webhooks/mappa`, { headers, body })).status).toBe(200);
    expect((await send(`${base}/webhooks/mappa`, { headers, body })).status).toBe(404);
  });

  it("maps Fastify's bodyLimit to the core's 413 and reports it", async () => {
    const errors: MappaWebhookError[] = [];
    const app = Fastify();
    await app.register(mappaWebhookPlugin, {
      secret,
      maxBodyBytes: 100,
      onError: (error) => errors.push(error),
    });
    const base = await start(app);
    const { headers, body } = await delivery();
    const response = await send(`${base}/webhooks/mappa`, { headers, body });
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body).error).toBe("payload_too_large");
    expect(response.headers.connection).toBe("close");
    expect(errors.map((e) => e.code)).toEqual(["payload_too_large"]);
  });

  it("answers 413 while streaming and stops reading the socket", async () => {
    let serverBytesRead = -1;
    const app = Fastify();
    app.addHook("onResponse", async (request) => {
      serverBytesRead = request.raw.socket.bytesRead;
    });
    await app.register(mappaWebhookPlugin, { secret, maxBodyBytes: 8 * 1024 });
    const base = await start(app);
    const maxBytes = 64 * 1024 * 1024;
    const result = await streamOversized(
      `${base}/webhooks/mappa`,
      { "content-type": "application/json", "mappa-signature": "t=1,v1=00" },
      maxBytes,
    );
    expect(result.status).toBe(413);
    expect(result.answeredEarly).toBe(true);
    for (let i = 0; i < 100 && serverBytesRead < 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(serverBytesRead).toBeGreaterThan(8 * 1024);
    expect(serverBytesRead).toBeLessThan(1024 * 1024);
  });
});

describe("the app's hooks around the webhook route", () => {
  it("verifies the bytes before a preValidation or preHandler hook could replace request.body", async () => {
    const seen: string[] = [];
    const app = Fastify();
    let preHandlerRuns = 0;
    app.addHook("preValidation", async (request) => {
      request.body = { replaced: true };
    });
    app.addHook("preHandler", async () => {
      preHandlerRuns += 1;
    });
    await app.register(mappaWebhookPlugin, {
      secret,
      on: { "report.completed": (event) => void seen.push(event.id ?? "") },
    });
    app.post("/api/echo", async (request) => ({ echo: request.body }));
    const base = await start(app);
    const { id, headers, body } = await delivery();
    const response = await send(`${base}/webhooks/mappa`, { headers, body });
    expect(response.status).toBe(200);
    expect(seen).toEqual([id]);
    // The same hooks still run for the app's other routes.
    const echo = await send(`${base}/api/echo`, {
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(JSON.parse(echo.body)).toEqual({ echo: { replaced: true } });
    expect(preHandlerRuns).toBe(1);
  });

  it("runs onRequest hooks first (one may refuse the delivery) and reads the stream preParsing returns", async () => {
    const app = Fastify();
    let tapped = 0;
    app.addHook("onRequest", async (request, reply) => {
      if (request.headers["x-static-token"] !== "t0ken") {
        await reply.code(403).send({ error: "forbidden" });
      }
    });
    app.addHook("preParsing", async (_request, _reply, payload) => {
      const tap = new PassThrough();
      tap.on("data", (chunk: Buffer) => {
        tapped += chunk.byteLength;
      });
      payload.pipe(tap);
      return tap;
    });
    await app.register(mappaWebhookPlugin, { secret });
    const base = await start(app);
    const { headers, body } = await delivery();
    expect((await send(`${base}/webhooks/mappa`, { headers, body })).status).toBe(403);
    expect(tapped).toBe(0);
    const accepted = await send(`${base}/webhooks/mappa`, {
      headers: { ...headers, "x-static-token": "t0ken" },
      body,
    });
    expect(accepted.status).toBe(200);
    expect(tapped).toBe(Buffer.byteLength(body));
  });

  it("answers 500 body_already_parsed, naming the fix, when a hook read the request stream", async () => {
    const errors: MappaWebhookError[] = [];
    const app = Fastify();
    app.addHook("preParsing", async (request, _reply, payload) => {
      const chunks: Buffer[] = [];
      for await (const chunk of payload) chunks.push(chunk as Buffer);
      request.body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    });
    await app.register(mappaWebhookPlugin, { secret, onError: (error) => errors.push(error) });
    const base = await start(app);
    const { headers, body } = await delivery();
    const response = await send(`${base}/webhooks/mappa`, { headers, body });
    expect(response.status).toBe(500);
    expect(JSON.parse(response.body)).toEqual({
      error: "body_already_parsed",
      fix: expect.stringMatching(/^Do not read the body in `onRequest` or `preParsing` hooks/),
    });
    expect(errors.map((e) => e.code)).toEqual(["body_already_parsed"]);
    expect(errors[0]?.message).toContain("`preParsing`");
  });
});
