// Real framework servers on 127.0.0.1:0 with our adapters, for tests over real HTTP.
import type { AddressInfo } from "node:net";
import type { MappaWebhooksOptions } from "@mappa-webhooks/core";

export type AdapterName = "express" | "fastify" | "hono";

export interface RunningReceiver {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts `adapter` with the receiver `options` (typed for no particular context: every
 * option of this package is context-free, as it must be to work with every adapter).
 */
export async function startReceiver(
  adapter: AdapterName,
  options: MappaWebhooksOptions,
): Promise<RunningReceiver> {
  if (adapter === "express") {
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
  if (adapter === "fastify") {
    const { default: Fastify } = await import("fastify");
    const { mappaWebhookPlugin } = await import("@mappa-webhooks/fastify");
    const app = Fastify({ logger: false });
    await app.register(mappaWebhookPlugin, options);
    await app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = app.server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/webhooks/mappa`, close: () => app.close() };
  }
  const { Hono } = await import("hono");
  const { serve } = await import("@hono/node-server");
  const { mappaWebhook } = await import("@mappa-webhooks/hono");
  const app = new Hono();
  app.post("/webhooks/mappa", mappaWebhook(options));
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
      resolve(started),
    );
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    close: () =>
      new Promise<void>((resolve) => {
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
