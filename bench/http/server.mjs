// One benchmark server in its own process: `node http/server.mjs <framework> <variant>`.
// It listens on 127.0.0.1 (port 0), reports `{ port }` to the parent over IPC, answers
// `{ type: "rss" }` messages with its resident set size, and exits when the parent disconnects.
//
// Variants, all answering a valid delivery with 200 `{"received":true}`:
//   adapter  our package for the framework (idempotency off: every request is handled)
//   optimal  a hand-written route: raw body, node:crypto verify, JSON.parse
//   bare     a raw-body route: reads the body, answers 200, verifies nothing
//   recipe   (Express) the Mappa docs' recipe: express.text({ type: "*/*" }) + the SDK's
//            verifier (Web Crypto key import per call) + JSON.parse
import { createHmac, timingSafeEqual } from "node:crypto";
import { SECRET, WEBHOOK_PATH } from "../lib/fixtures.mjs";
import { mappaSdkVerifySignature } from "../lib/mappa-sdk-pattern.mjs";

const [framework, variant] = process.argv.slice(2);
const MAX_BODY_BYTES = Number(process.env.BENCH_MAX_BODY_BYTES ?? 1024 * 1024);
const RECEIVED = JSON.stringify({ received: true });
const JSON_TYPE = "application/json; charset=utf-8";
const SECRET_BYTES = Buffer.from(SECRET);
const TOLERANCE_SEC = 300;

/** What a careful hand-written route checks: header shape, timestamp, HMAC in constant time. */
function verifyOptimal(raw, header) {
  if (typeof header !== "string") return false;
  let t;
  let v1;
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    const key = part.slice(0, eq).trim();
    if (key === "t") t = part.slice(eq + 1).trim();
    else if (key === "v1" && v1 === undefined) v1 = part.slice(eq + 1).trim();
  }
  if (t === undefined || v1 === undefined || !/^\d+$/.test(t) || v1.length !== 64) return false;
  if (Math.abs(Date.now() / 1000 - Number(t)) > TOLERANCE_SEC) return false;
  const expected = Buffer.from(v1, "hex");
  if (expected.length !== 32) return false;
  const digest = createHmac("sha256", SECRET_BYTES).update(`${t}.`).update(raw).digest();
  return timingSafeEqual(digest, expected);
}

/** The body after verification, or an error status. */
function verifyAndParse(raw, header) {
  if (!verifyOptimal(raw, header)) return { status: 401 };
  try {
    return { status: 200, event: JSON.parse(raw.toString()) };
  } catch {
    return { status: 400 };
  }
}

const adapterOptions = {
  secret: SECRET,
  maxBodyBytes: MAX_BODY_BYTES,
  // Every request of a load run carries the same event: with deduplication on, all but the
  // first would take the duplicate path. Off, each one runs the whole pipeline and the handler.
  idempotency: false,
  on: { "report.completed": () => {} },
};

/** A Node route body reader with a byte limit, for the hand-written Express routes. */
function readNodeBody(req, onDone) {
  const chunks = [];
  let size = 0;
  let tooLarge = false;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) tooLarge = true;
    else chunks.push(chunk);
  });
  req.on("end", () => onDone(tooLarge ? undefined : Buffer.concat(chunks, size)));
}

function sendNode(res, status) {
  res.statusCode = status;
  res.setHeader("content-type", JSON_TYPE);
  res.end(status === 200 ? RECEIVED : JSON.stringify({ error: status }));
}

async function startExpress() {
  const { default: express } = await import("express");
  const app = express();
  app.disable("x-powered-by");
  if (variant === "adapter") {
    const { mappaWebhook } = await import("@mappa-webhooks/express");
    app.use(mappaWebhook({ ...adapterOptions, path: WEBHOOK_PATH }));
  } else if (variant === "optimal") {
    app.post(WEBHOOK_PATH, (req, res) => {
      readNodeBody(req, (raw) => {
        if (raw === undefined) return sendNode(res, 413);
        sendNode(res, verifyAndParse(raw, req.headers["mappa-signature"]).status);
      });
    });
  } else if (variant === "bare") {
    app.post(WEBHOOK_PATH, (req, res) => {
      readNodeBody(req, (raw) => sendNode(res, raw === undefined ? 413 : 200));
    });
  } else if (variant === "recipe") {
    app.post(WEBHOOK_PATH, express.text({ type: "*/*" }), async (req, res) => {
      try {
        await mappaSdkVerifySignature({ payload: req.body, headers: req.headers, secret: SECRET });
      } catch {
        return res.status(401).json({ error: "invalid signature" });
      }
      JSON.parse(req.body);
      res.status(200).json({ received: true });
    });
  } else throw new Error(`unknown express variant ${variant}`);
  const server = app.listen(0, "127.0.0.1");
  await new Promise((resolve, reject) => server.once("listening", resolve).once("error", reject));
  return { port: server.address().port, close: () => server.close() };
}

async function startFastify() {
  const { default: Fastify } = await import("fastify");
  const app = Fastify({ logger: false });
  if (variant === "adapter") {
    const { mappaWebhookPlugin } = await import("@mappa-webhooks/fastify");
    await app.register(mappaWebhookPlugin, { ...adapterOptions, path: WEBHOOK_PATH });
  } else if (variant === "optimal" || variant === "bare") {
    await app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => {
        done(null, body);
      });
      scope.post(WEBHOOK_PATH, { bodyLimit: MAX_BODY_BYTES }, (request, reply) => {
        const status =
          variant === "bare"
            ? 200
            : verifyAndParse(request.body, request.headers["mappa-signature"]).status;
        reply
          .code(status)
          .header("content-type", JSON_TYPE)
          .send(status === 200 ? RECEIVED : JSON.stringify({ error: status }));
      });
    });
  } else throw new Error(`unknown fastify variant ${variant}`);
  await app.listen({ port: 0, host: "127.0.0.1" });
  return { port: app.server.address().port, close: () => app.close() };
}

async function startHono() {
  const { Hono } = await import("hono");
  const { serve } = await import("@hono/node-server");
  const app = new Hono();
  if (variant === "adapter") {
    const { mappaWebhook } = await import("@mappa-webhooks/hono");
    app.post(WEBHOOK_PATH, mappaWebhook(adapterOptions));
  } else if (variant === "optimal" || variant === "bare") {
    const { bodyLimit } = await import("hono/body-limit");
    const limit = bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => c.json({ error: 413 }, 413),
    });
    app.post(WEBHOOK_PATH, limit, async (c) => {
      const raw = Buffer.from(await c.req.arrayBuffer());
      const status =
        variant === "bare" ? 200 : verifyAndParse(raw, c.req.header("mappa-signature")).status;
      return c.body(status === 200 ? RECEIVED : JSON.stringify({ error: status }), status, {
        "content-type": JSON_TYPE,
      });
    });
  } else throw new Error(`unknown hono variant ${variant}`);
  const server = await new Promise((resolve) => {
    const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
      resolve(started),
    );
  });
  return { port: server.address().port, close: () => server.close() };
}

const starters = { express: startExpress, fastify: startFastify, hono: startHono };
const start = starters[framework];
if (start === undefined) throw new Error(`unknown framework ${framework}`);
const server = await start();

process.on("message", (message) => {
  if (message?.type === "rss") process.send({ type: "rss", rss: process.memoryUsage().rss });
});
// The parent going away (or closing the channel) ends the server.
process.on("disconnect", () => {
  server.close();
  process.exit(0);
});
process.send({ type: "ready", port: server.port, pid: process.pid });
