import { send, streamOversized } from "@mappa-webhooks/conformance";
import type { MappaEvent, MappaWebhookError } from "@mappa-webhooks/core";
import { signPayload } from "@mappa-webhooks/core";
import express5, { type NextFunction, type Request, type Response } from "express";
import express4 from "express4";
import { afterEach, describe, expect, it } from "vitest";
import { mappaWebhook, rawBodySaver } from "../src/index.js";
import { listen } from "./helpers.js";

const secret = "whsec_express_tests";
let sequence = 0;

async function delivery(type = "report.completed") {
  sequence += 1;
  const id = `evt_express_${sequence}`;
  const body = JSON.stringify({
    id,
    type,
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

const majors = [
  { name: "Express 5", express: express5 },
  { name: "Express 4", express: express4 as unknown as typeof express5 },
];

describe.each(majors)("$name", ({ express }) => {
  const running: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const app of running.splice(0)) await app.close();
  });
  const start = async (app: ReturnType<typeof express>, path?: string) => {
    const started = await listen(app, path);
    running.push(started);
    return started;
  };

  it("answers 500 body_already_parsed after a global express.json(), naming both fixes", async () => {
    const errors: MappaWebhookError[] = [];
    const seen: MappaEvent[] = [];
    const app = express();
    app.use(express.json());
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
      fix: "Mount `app.use(mappaWebhook(...))` before `express.json()`, or keep the raw bytes with `express.json({ verify: rawBodySaver })`.",
    });
    expect(errors.map((e) => e.code)).toEqual(["body_already_parsed"]);
    expect(errors[0]?.message).toContain("before `express.json()`");
    expect(errors[0]?.message).toContain("rawBodySaver");
    expect(seen).toHaveLength(0);
  });

  it("answers 500 body_already_parsed after express.text() too", async () => {
    const app = express();
    app.use(express.text({ type: "*/*" }));
    app.use(mappaWebhook({ secret }));
    const { webhookUrl } = await start(app);
    const { headers, body } = await delivery();
    const response = await send(webhookUrl, { headers, body });
    expect(response.status).toBe(500);
    expect(JSON.parse(response.body)).toMatchObject({
      error: "body_already_parsed",
      fix: expect.stringContaining("before `express.json()`"),
    });
  });

  it("reads the stream itself when a global express.json() skipped the content type", async () => {
    const app = express();
    app.use(express.json());
    app.use(mappaWebhook({ secret }));
    const { webhookUrl } = await start(app);
    const { headers, body } = await delivery();
    const response = await send(webhookUrl, {
      headers: { ...headers, "content-type": "text/plain" },
      body,
    });
    expect(response.status).toBe(200);
  });

  it("verifies the bytes saved by express.json({ verify: rawBodySaver })", async () => {
    const seen: MappaEvent[] = [];
    const app = express();
    app.use(express.json({ verify: rawBodySaver }));
    app.use(mappaWebhook({ secret, on: { "report.completed": (event) => void seen.push(event) } }));
    app.post("/api/echo", (req, res) => {
      res.json({ echo: req.body });
    });
    const { webhookUrl, jsonUrl } = await start(app);
    const { id, headers, body } = await delivery();
    const response = await send(webhookUrl, { headers, body });
    expect(response.status).toBe(200);
    expect(seen.map((e) => e.id)).toEqual([id]);
    const echo = await send(jsonUrl as string, {
      headers: { "content-type": "application/json" },
      body: '{"a":1}',
    });
    expect(JSON.parse(echo.body)).toEqual({ echo: { a: 1 } });
  });

  it("verifies the Buffer left by express.raw()", async () => {
    const seen: MappaEvent[] = [];
    const app = express();
    app.use(express.raw({ type: "*/*" }));
    app.use(mappaWebhook({ secret, on: { "report.completed": (event) => void seen.push(event) } }));
    const { webhookUrl } = await start(app);
    const { id, headers, body } = await delivery();
    expect((await send(webhookUrl, { headers, body })).status).toBe(200);
    expect(seen.map((e) => e.id)).toEqual([id]);
  });

  it("works as a route handler, where the route decides the path and methods", async () => {
    const seen: MappaEvent[] = [];
    const app = express();
    app.post(
      "/hooks",
      mappaWebhook({ secret, on: { "report.completed": (event) => void seen.push(event) } }),
    );
    app.all("/all-methods", mappaWebhook({ secret }));
    app.use(express.json());
    const { baseUrl } = await start(app);
    const { id, headers, body } = await delivery();
    expect((await send(`${baseUrl}/hooks`, { headers, body })).status).toBe(200);
    expect(seen.map((e) => e.id)).toEqual([id]);
    // The default path is not listened on: the route is the path.
    expect((await send(`${baseUrl}/webhooks/mappa`, { headers, body })).status).toBe(404);
    expect((await send(`${baseUrl}/hooks`, { method: "GET" })).status).toBe(404);
    const get = await send(`${baseUrl}/all-methods`, { method: "GET" });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe("POST");
  });

  it("calls next() for other paths, even after an earlier route called next()", async () => {
    const app = express();
    app.post("/other", (_req, _res, next) => next());
    app.use(mappaWebhook({ secret }));
    app.use(express.json());
    app.post("/other", (req, res) => {
      res.json({ other: req.body });
    });
    const { baseUrl } = await start(app);
    const other = await send(`${baseUrl}/other`, {
      headers: { "content-type": "application/json" },
      body: '{"x":true}',
    });
    expect(other.status).toBe(200);
    expect(JSON.parse(other.body)).toEqual({ other: { x: true } });
  });

  it("matches its path as req.path does: with a query or a trailing slash, and nothing longer", async () => {
    const app = express();
    app.use(mappaWebhook({ secret }));
    app.use("/plain", mappaWebhook({ secret, path: "/a'b" }));
    app.use("/odd", mappaWebhook({ secret, path: "/a b" }));
    app.use((_req, res) => void res.status(404).end());
    const { baseUrl } = await start(app);
    const { headers, body } = await delivery();
    const status = async (path: string) =>
      (await send(`${baseUrl}${path}`, { headers, body })).status;
    for (const path of ["/webhooks/mappa", "/webhooks/mappa/", "/webhooks/mappa?x=1"]) {
      expect([path, await status(path)]).toEqual([path, 200]);
    }
    for (const path of ["/webhooks/mappa/?x=1#h", "/webhooks/mappa?x=1&y=%20", "/plain/a'b?q"]) {
      expect([path, await status(path)]).toEqual([path, 200]);
    }
    for (const path of [
      "/webhooks/mappax",
      "/webhooks/mappa/x",
      "/webhooks/mapp",
      "/Webhooks/mappa",
    ]) {
      expect([path, await status(path)]).toEqual([path, 404]);
    }
    // A path that is not plain is matched against the parsed URL, as before.
    expect(await status("/odd/a%20b")).toBe(404);
  });

  it("handles a custom path relative to where it is mounted", async () => {
    const app = express();
    app.use("/integrations", mappaWebhook({ secret, path: "/mappa" }));
    const { baseUrl } = await start(app);
    const { headers, body } = await delivery();
    expect((await send(`${baseUrl}/integrations/mappa`, { headers, body })).status).toBe(200);
    expect((await send(`${baseUrl}/webhooks/mappa`, { headers, body })).status).toBe(404);
  });

  it("sets req.mappaEvent for handlers and for middleware observing the request", async () => {
    const inHandler: Array<MappaEvent | undefined> = [];
    const afterResponse: Array<MappaEvent | undefined> = [];
    const app = express();
    app.use((req, res, next) => {
      res.on("finish", () => afterResponse.push(req.mappaEvent));
      next();
    });
    app.use(
      mappaWebhook({
        secret,
        on: { "report.completed": (_event, { req }) => void inHandler.push(req.mappaEvent) },
      }),
    );
    const { webhookUrl } = await start(app);
    const { id, headers, body } = await delivery();
    expect((await send(webhookUrl, { headers, body })).status).toBe(200);
    expect(inHandler.map((e) => e?.id)).toEqual([id]);
    // A forged delivery never gets an event.
    expect((await send(webhookUrl, { headers, body: body.replace("rep_", "rex_") })).status).toBe(
      401,
    );
    for (let i = 0; i < 100 && afterResponse.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(afterResponse.map((e) => e?.id)).toEqual([id, undefined]);
  });

  it('mode "next" hands new verified events to the next middleware, and only those', async () => {
    const app = express();
    app.post("/hooks", mappaWebhook({ secret, mode: "next" }), (req, res) => {
      res.status(202).json({
        handledBy: "next",
        id: req.mappaEvent?.id,
        rawBytes: req.rawBody?.byteLength,
      });
    });
    const { baseUrl } = await start(app);
    const { id, headers, body } = await delivery();
    const first = await send(`${baseUrl}/hooks`, { headers, body });
    expect(first.status).toBe(202);
    expect(JSON.parse(first.body)).toEqual({
      handledBy: "next",
      id,
      rawBytes: Buffer.byteLength(body),
    });
    const duplicate = await send(`${baseUrl}/hooks`, { headers, body });
    expect(duplicate.status).toBe(200);
    expect(JSON.parse(duplicate.body)).toEqual({ received: true, duplicate: true });
    const forged = await send(`${baseUrl}/hooks`, { headers, body: body.replace("rep_", "rex_") });
    expect(forged.status).toBe(401);
    expect(() => mappaWebhook({ secret, mode: "later" as "next" })).toThrow(/mode/);
  });

  it("answers 413 while streaming and stops reading the socket", async () => {
    let serverBytesRead = -1;
    const app = express();
    app.use((req, res, next) => {
      res.on("finish", () => {
        serverBytesRead = req.socket.bytesRead;
      });
      next();
    });
    app.use(mappaWebhook({ secret, maxBodyBytes: 8 * 1024 }));
    const { webhookUrl } = await start(app);
    const maxBytes = 64 * 1024 * 1024;
    const result = await streamOversized(
      webhookUrl,
      { "content-type": "application/json", "mappa-signature": "t=1,v1=00" },
      maxBytes,
    );
    expect(result.status).toBe(413);
    expect(result.answeredEarly).toBe(true);
    // The server took a bounded prefix of the stream, not what the client pushed.
    expect(serverBytesRead).toBeGreaterThan(8 * 1024);
    expect(serverBytesRead).toBeLessThan(1024 * 1024);
  });

  it("leaves the answer to a handler that wrote it through res, and never calls next(err)", async () => {
    const reachedErrorHandler: unknown[] = [];
    const app = express();
    app.use(
      mappaWebhook({
        secret,
        on: {
          "report.completed": (_event, { res }) => {
            res.status(202).json({ answeredBy: "handler" });
          },
        },
      }),
    );
    app.use((error: unknown, _req: Request, _res: Response, next: NextFunction) => {
      reachedErrorHandler.push(error);
      next(error);
    });
    const { webhookUrl } = await start(app);
    const { headers, body } = await delivery();
    const response = await send(webhookUrl, { headers, body });
    expect(response.status).toBe(202);
    expect(JSON.parse(response.body)).toEqual({ answeredBy: "handler" });
    expect(reachedErrorHandler).toEqual([]);
  });

  it("answers 413 at once to a declared length over the limit", async () => {
    const app = express();
    app.use(mappaWebhook({ secret, maxBodyBytes: 100 }));
    const { webhookUrl } = await start(app);
    const { headers, body } = await delivery();
    const response = await send(webhookUrl, { headers, body });
    expect(response.status).toBe(413);
    expect(response.headers.connection).toBe("close");
  });
});
