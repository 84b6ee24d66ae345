import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { ConformanceApp } from "@mappa-webhooks/conformance";

/** Anything with Koa's `callback()`: a Koa 2 or Koa 3 app. */
export interface KoaLike {
  callback(): (req: never, res: never) => unknown;
}

/** Serves a Koa app on 127.0.0.1:0 and tells its URLs. */
export async function listen(
  app: KoaLike,
  webhookPath = "/webhooks/mappa",
): Promise<ConformanceApp & { server: Server; baseUrl: string }> {
  const server = createServer(app.callback() as Parameters<typeof createServer>[1]);
  server.listen(0, "127.0.0.1");
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
