// `pnpm start`: the example on Node. PORT (default 3000, 0 picks a free port), HOST (default
// 127.0.0.1) and MAPPA_WEBHOOK_SECRET come from the environment.
import { serve } from "@hono/node-server";
import { createApp } from "./src/app.js";

const hostname = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT ?? 3000);
const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret.");
  process.exit(1);
}

const server = serve({ fetch: createApp(secret).fetch, port, hostname }, (info) => {
  console.log(`listening on http://${hostname}:${info.port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
