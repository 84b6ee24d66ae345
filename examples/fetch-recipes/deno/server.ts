// Deno.serve: the receiver behind a path check (run with --allow-net --allow-env --allow-read).
import { createMappaWebhooks } from "@mappa-webhooks/core";

const webhooks = createMappaWebhooks({
  secret: Deno.env.get("MAPPA_WEBHOOK_SECRET") ?? "",
  on: { "report.completed": (event) => console.log(`report ${event.data.reportId} is ready`) },
});

Deno.serve(
  {
    port: Number(Deno.env.get("PORT") ?? 3000),
    hostname: Deno.env.get("HOST") ?? "127.0.0.1",
    onListen: ({ hostname, port }) => console.log(`listening on http://${hostname}:${port}`),
  },
  (request) => {
    if (new URL(request.url).pathname === "/webhooks/mappa") return webhooks.handleRequest(request);
    return new Response("Not Found", { status: 404 });
  },
);
