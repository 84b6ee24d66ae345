// Deno: the app on Deno.serve.
import { createApp } from "./app.js";

Deno.serve(
  {
    port: Number(Deno.env.get("PORT") ?? 0),
    hostname: "127.0.0.1",
    onListen: ({ port }) => console.log(`listening on http://127.0.0.1:${port}`),
  },
  createApp("deno").fetch,
);
