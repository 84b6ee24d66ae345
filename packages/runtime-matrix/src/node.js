// Node (20, 22, 24): the app on @hono/node-server.
import { serve } from "@hono/node-server";
import { createApp } from "./app.js";

const server = serve(
  { fetch: createApp("node").fetch, port: Number(process.env.PORT ?? 0), hostname: "127.0.0.1" },
  (info) => console.log(`listening on http://127.0.0.1:${info.port}`),
);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
