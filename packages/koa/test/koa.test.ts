import { request as httpRequest } from "node:http";
import { bodyParser as koaBodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import { send } from "@mappa-webhooks/conformance";
import { type MappaEvent, type MappaWebhookError, signPayload } from "@mappa-webhooks/core";
import legacyBodyParser from "koa-bodyparser";
import Koa2 from "koa2";
import Koa3 from "koa3";
import { afterEach, describe, expect, it } from "vitest";
import { mappaWebhook } from "../src/index.js";
import { type KoaLike, listen } from "./helpers.js";

const secret = "whsec_koa_tests";
let sequence = 0;

async function delivery(contentType = "application/json") {
  sequence += 1;
  const id = `evt_koa_${sequence}_${Date.now().toString(36)}`;
  const body = JSON.stringify({
    id,
    type: "report.completed",
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: `job_${sequence}`, reportId: `rep_${sequence}`, status: "completed" },
  });
  const signature = await signPayload({ payload: body, secret });
  return { id, body, headers: { "content-type": contentType, "mappa-signature": signature } };
}

const majors = [
  { name: "Koa 3", Koa: Koa3 },
  { name: "Koa 2", Koa: Koa2 },
];

const parsers = [
  { name: "@koa/bodyparser", make: () => koaBodyParser() },
  { name: "koa-bodyparser", make: () => legacyBodyParser() },
];

describe.each(majors)("$name", ({ Koa }) => {
  const running: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const app of running.splice(0)) await app.close();
  });
  const start = async (app: KoaLike, path?: string) => {
    const started = await listen(app, path);
    running.push(started);
    return started;
  };

  it.each(parsers)(
    "answers 500 body_already_parsed after $name ran first, naming the fix",
    async ({ make }) => {
      const errors: MappaWebhookError[] = [];
      const seen: MappaEvent[] = [];
      const app = new Koa();
      app.use(make());
      app.use(
        mappaWebhook({
          secret,
          on: { "report.completed": (event) => void seen.push(event) },
          onError: (error) => errors.push(error),
        }),
      );
      const { webhookUrl } = await start(app);
      const { headers, body } = await delivery();
      const response = await send(webhookUrl, { headers, body });
      expect(response.status).toBe(500);
      expect(JSON.parse(response.body)).toEqual({
        error: "body_already_parsed",
        fix: "Register `app.use(mappaWebhook(...))` before `app.use(bodyParser())`.",
      });
      expect(errors.map((e) => e.code)).toEqual(["body_already_parsed"]);
      expect(errors[0]?.message).toContain("before `app.use(bodyParser())`");
      expect(seen).toHaveLength(0);
    },
  );

  it.each(parsers)(
    "reads the stream itself when $name skipped the content type",
    async ({ make }) => {
      const seen: string[] = [];
      const app = new Koa();
      app.use(make()); // parses json and form only: a text/plain body stays unread
      app.use(mappaWebhook({ secret, on: { "report.completed": (e) => void seen.push(e.id!) } }));
      const { webhookUrl } = await start(app);
      const { id, headers, body } = await delivery("text/plain");
      const response = await send(webhookUrl, { headers, body });
      expect(response.status).toBe(200);
      expect(seen).toEqual([id]);
    },
  );

  it("hands every other path on to the next middleware, and answers 405 on its own path", async () => {
    const app = new Koa();
    app.use(mappaWebhook({ secret }));
    app.use((ctx) => {
      ctx.body = { other: ctx.path };
    });
    const { baseUrl, webhookUrl } = await start(app);
    const other = await send(`${baseUrl}/webhooks/other`, { method: "GET" });
    expect(JSON.parse(other.body)).toEqual({ other: "/webhooks/other" });
    const get = await send(webhookUrl, { method: "GET" });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe("POST");
    const slash = await send(`${webhookUrl}/`, { method: "GET" });
    expect(slash.status).toBe(405);
  });

  it("serves a custom path with `path`", async () => {
    const app = new Koa();
    app.use(mappaWebhook({ secret, path: "/hooks/mappa" }));
    const { baseUrl } = await start(app);
    const { headers, body } = await delivery();
    expect((await send(`${baseUrl}/hooks/mappa`, { headers, body })).status).toBe(200);
    expect((await send(`${baseUrl}/webhooks/mappa`, { headers, body })).status).toBe(404);
  });

  it("works as an @koa/router route handler with params and a prefix, ignoring `path`", async () => {
    const seen: Array<{ id: string | undefined; tenant: string }> = [];
    const app = new Koa();
    const router = new Router({ prefix: "/integrations" });
    router.post(
      "/:tenant/mappa",
      mappaWebhook({
        secret,
        on: {
          "report.completed": (event, ctx) => {
            seen.push({
              id: event.id,
              tenant: (ctx as unknown as { params: { tenant: string } }).params.tenant,
            });
          },
        },
      }),
    );
    app.use(router.routes());
    app.use(router.allowedMethods());
    const { baseUrl } = await start(app);
    const { id, headers, body } = await delivery();
    const response = await send(`${baseUrl}/integrations/acme/mappa`, { headers, body });
    expect(response.status).toBe(200);
    expect(seen).toEqual([{ id, tenant: "acme" }]);
  });

  it('with mode "next" hands new events to the next middleware, and answers duplicates itself', async () => {
    const app = new Koa();
    app.use(mappaWebhook({ secret, mode: "next" }));
    app.use(koaBodyParser()); // skips: the webhook read the stream and set the body
    app.use((ctx) => {
      ctx.status = 202;
      ctx.body = {
        received: ctx.state.mappaEvent?.id,
        body: (ctx.request as { body?: { id?: string } }).body?.id,
      };
    });
    const { webhookUrl } = await start(app);
    const { id, headers, body } = await delivery();
    const first = await send(webhookUrl, { headers, body });
    expect(first.status).toBe(202);
    expect(JSON.parse(first.body)).toEqual({ received: id, body: id });
    const again = await send(webhookUrl, { headers, body });
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    const forged = await send(webhookUrl, { headers, body: body.replace("rep_", "rex_") });
    expect(forged.status).toBe(401);
  });

  it("sets ctx.state.mappaEvent before the handlers run", async () => {
    const states: Array<string | undefined> = [];
    const app = new Koa();
    app.use(
      mappaWebhook({
        secret,
        on: { "report.completed": (_event, ctx) => void states.push(ctx.state.mappaEvent?.id) },
      }),
    );
    const { webhookUrl } = await start(app);
    const { id, headers, body } = await delivery();
    expect((await send(webhookUrl, { headers, body })).status).toBe(200);
    expect(states).toEqual([id]);
  });

  it("answers 408 body_timeout to a sender that stalls mid-body", async () => {
    const errors: string[] = [];
    const app = new Koa();
    app.use(mappaWebhook({ secret, bodyTimeoutMs: 300, onError: (e) => errors.push(e.code) }));
    const { webhookUrl } = await start(app);
    const { headers, body } = await delivery();
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(webhookUrl, {
        method: "POST",
        headers: { ...headers, "content-length": Buffer.byteLength(body) },
        agent: false,
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.write(body.slice(0, 10)); // and never the rest
    });
    expect(status).toBe(408);
    expect(errors).toEqual(["body_timeout"]);
  });

  it("reports a client that goes away mid-body as request_aborted and keeps serving", async () => {
    let resolveError: (code: string) => void = () => {};
    const reported = new Promise<string>((resolve) => (resolveError = resolve));
    const app = new Koa();
    // Koa itself logs the socket's parse error of a half-sent request; the test expects it.
    app.silent = true;
    app.use(mappaWebhook({ secret, onError: (e) => resolveError(e.code) }));
    const { webhookUrl } = await start(app);
    const { headers, body } = await delivery();
    const req = httpRequest(webhookUrl, {
      method: "POST",
      headers: { ...headers, "content-length": Buffer.byteLength(body) },
      agent: false,
    });
    req.on("error", () => {});
    req.write(body.slice(0, 10));
    await new Promise((resolve) => setTimeout(resolve, 50));
    req.destroy();
    expect(await reported).toBe("request_aborted");
    const next = await delivery();
    expect((await send(webhookUrl, { headers: next.headers, body: next.body })).status).toBe(200);
  });
});

describe("options", () => {
  it("throws typed errors for a bad configuration", () => {
    expect(() => mappaWebhook({ secret: "" })).toThrow(
      expect.objectContaining({ code: "missing_secret" }),
    );
    expect(() => mappaWebhook({ secret, mode: "later" as "next" })).toThrow(
      expect.objectContaining({ code: "invalid_options" }),
    );
  });
});
