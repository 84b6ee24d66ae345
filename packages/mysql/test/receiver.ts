// An Express server on 127.0.0.1:0 with @mappa-webhooks/express, for tests over real HTTP.
import type { AddressInfo } from "node:net";
import type { MappaWebhooksOptions } from "@mappa-webhooks/core";

export interface RunningReceiver {
  url: string;
  close(): Promise<void>;
}

export async function startReceiver(options: MappaWebhooksOptions): Promise<RunningReceiver> {
  const { default: express } = await import("express");
  const { mappaWebhook } = await import("@mappa-webhooks/express");
  const app = express();
  app.use(mappaWebhook(options));
  const server = app.listen(0, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    server.once("listening", () => resolve()).once("error", reject);
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
