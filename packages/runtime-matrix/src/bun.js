// Bun: the app on Bun.serve.
import { createApp } from "./app.js";

const server = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: "127.0.0.1",
  fetch: createApp("bun").fetch,
});
console.log(`listening on http://127.0.0.1:${server.port}`);
