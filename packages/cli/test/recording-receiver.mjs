// A receiver for the demo (`--receiver`) that keeps every body POSTed to /webhooks/mappa, one
// JSON string per line, in the file named by RECORD_FILE; otherwise it behaves like the demo's
// built-in receiver (verifies, deduplicates, one `[mappa] <type> <key>` line per handled event).
import { appendFileSync } from "node:fs";
import { createServer } from "node:http";
import { createMappaWebhooks, readBodyWithLimit } from "@mappa-webhooks/core";

const record = process.env.RECORD_FILE;
const webhooks = createMappaWebhooks({ secret: process.env.MAPPA_WEBHOOK_SECRET ?? "" });
webhooks.onAny((event) => {
  process.stdout.write(`[mappa] ${event.type} ${event.idempotencyKey ?? "-"}\n`);
});

const server = createServer(async (req, res) => {
  try {
    const rawBody = await readBodyWithLimit(req, webhooks.maxBodyBytes);
    if (req.url === "/webhooks/mappa" && record) {
      appendFileSync(record, `${JSON.stringify(new TextDecoder().decode(rawBody))}\n`);
    }
    const result = await webhooks.handle({
      method: req.method ?? "GET",
      headers: req.headers,
      rawBody,
    });
    res.writeHead(result.status, result.headers).end(result.body);
  } catch (error) {
    const result = webhooks.errorResponse(error);
    res.writeHead(result.status, result.headers).end(result.body);
  }
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
