// Server CPU time per request of the core pipeline's pieces inside one Fastify server, to find
// where `webhooks.handle` spends what the hand-written route does not:
//   node prototype/pipeline-cpu.mjs
// Routes (all verify the signature and parse the 1 KiB event, then answer 200):
//   optimal      node:crypto verify + JSON.parse, written by hand
//   verifyLit    the core's verifySignature, its arguments an object literal, + parseEvent
//   verifySpread the same with the arguments built as `{ ...fixedOptions, payload, headers }`,
//                as pipeline.ts `verifyAndParse` builds them
//   handle       the core's `createMappaWebhooks(...).handle`, as the adapters call it
//   lean         prototype/pipeline.mjs's sketch of `handle` (no spreads, no closures)
// The server runs in a child process; autocannon in another (lib/processes.mjs). CPU time
// comes from the server's process.cpuUsage(), so the load generator's share does not count.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";

const ROUTES = ["optimal", "verifyLit", "verifySpread", "handle", "lean"];

async function serve() {
  const { createHmac, timingSafeEqual } = await import("node:crypto");
  const { default: Fastify } = await import("fastify");
  const { createMappaWebhooks, parseEvent, verifySignature } = await import("@mappa-webhooks/core");
  const { SECRET } = await import("../lib/fixtures.mjs");
  const { createLeanHandle } = await import("./pipeline.mjs");
  const secretBytes = Buffer.from(SECRET);
  const receiver = { secret: SECRET, idempotency: false, on: { "report.completed": () => {} } };
  const webhooks = createMappaWebhooks(receiver);
  const lean = createLeanHandle(receiver);
  const fixedOptions = { secret: [SECRET] };
  const verifyOptimal = (raw, header) => {
    let t;
    let v1;
    for (const part of header.split(",")) {
      const eq = part.indexOf("=");
      if (part.slice(0, eq) === "t") t = part.slice(eq + 1);
      else if (part.slice(0, eq) === "v1") v1 = part.slice(eq + 1);
    }
    const digest = createHmac("sha256", secretBytes).update(`${t}.`).update(raw).digest();
    if (!timingSafeEqual(digest, Buffer.from(v1, "hex"))) throw new Error("forged");
  };
  const ok = (reply) =>
    reply
      .code(200)
      .header("content-type", "application/json; charset=utf-8")
      .send('{"received":true}');
  const send = (reply, r) => reply.code(r.status).headers(r.headers).send(r.body);
  const app = Fastify();
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) =>
      done(null, body),
    );
    scope.post("/optimal", (req, reply) => {
      verifyOptimal(req.body, req.headers["mappa-signature"]);
      JSON.parse(req.body.toString());
      ok(reply);
    });
    scope.post("/verifyLit", async (req, reply) => {
      await verifySignature({
        secret: fixedOptions.secret,
        payload: req.body,
        headers: req.headers,
      });
      parseEvent(req.body);
      return ok(reply);
    });
    scope.post("/verifySpread", async (req, reply) => {
      await verifySignature({ ...fixedOptions, payload: req.body, headers: req.headers });
      parseEvent(req.body);
      return ok(reply);
    });
    const request = (req) => ({ method: "POST", rawBody: req.body, headers: req.headers });
    scope.post("/handle", async (req, reply) => send(reply, await webhooks.handle(request(req))));
    scope.post("/lean", async (req, reply) => send(reply, await lean(request(req))));
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  process.on("message", () => {
    const usage = process.cpuUsage();
    process.send({ cpuMs: (usage.user + usage.system) / 1000 });
  });
  process.on("disconnect", () => process.exit(0));
  process.send({ port: app.server.address().port });
}

async function drive() {
  const { runLoad } = await import("../lib/processes.mjs");
  const child = fork(fileURLToPath(import.meta.url), ["serve"]);
  const { port } = await new Promise((resolve) => child.once("message", resolve));
  const cpuMs = () =>
    new Promise((resolve) => {
      child.once("message", (m) => resolve(m.cpuMs));
      child.send("cpu");
    });
  const url = (route) => `http://127.0.0.1:${port}/${route}`;
  for (const route of ROUTES) await runLoad(url(route), 1, 10, 1024);
  const perRequest = Object.fromEntries(ROUTES.map((route) => [route, []]));
  for (let round = 0; round < 3; round++) {
    for (const route of ROUTES) {
      const before = await cpuMs();
      const result = await runLoad(url(route), 2, 10, 1024);
      const after = await cpuMs();
      if (result.non2xx > 0) throw new Error(`${route}: ${result.non2xx} non-2xx answers`);
      perRequest[route].push(((after - before) * 1000) / result.total);
    }
  }
  child.disconnect();
  const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
  const optimal = median(perRequest.optimal);
  for (const route of ROUTES) {
    const us = median(perRequest[route]);
    console.log(
      `${route.padEnd(13)} ${us.toFixed(1)} µs CPU/request  (${(us / optimal).toFixed(2)}× optimal)`,
    );
  }
}

if (process.argv[2] === "serve") await serve();
else await drive();
