// Bun.serve: the receiver on a route of Bun's own server.
import { webhooks } from "../src/receiver.js";

const server = Bun.serve({
  port: Number(process.env.PORT ?? 3000),
  hostname: process.env.HOST ?? "127.0.0.1",
  routes: {
    "/webhooks/mappa": (request) => webhooks.handleRequest(request),
  },
  fetch: () => new Response("Not Found", { status: 404 }),
});
console.log(`listening on http://${server.hostname}:${server.port}`);
