// The core's receiver (createMappaWebhooks) behind node:http on 127.0.0.1:0, for tests over
// real HTTP without a framework.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createMappaWebhooks, type MappaWebhooksOptions } from "@mappa-webhooks/core";

export interface RunningReceiver {
  url: string;
  close(): Promise<void>;
}

export async function startReceiver(options: MappaWebhooksOptions): Promise<RunningReceiver> {
  const webhooks = createMappaWebhooks(options);
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const response = await webhooks.handle({
      method: req.method ?? "GET",
      headers: req.headers,
      rawBody: Buffer.concat(chunks),
    });
    res.writeHead(response.status, response.headers).end(response.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
