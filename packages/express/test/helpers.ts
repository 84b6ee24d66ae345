import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { ConformanceApp } from "@mappa-webhooks/conformance";
import type { Express } from "express";

/** Starts an Express app on 127.0.0.1:0 and tells its URLs. */
export async function listen(
  app: Express,
  webhookPath = "/webhooks/mappa",
): Promise<ConformanceApp & { server: Server; baseUrl: string }> {
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    server,
    baseUrl,
    webhookUrl: `${baseUrl}${webhookPath}`,
    jsonUrl: `${baseUrl}/api/echo`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
