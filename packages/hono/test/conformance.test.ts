import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { describeAdapterExports, describeConformance } from "@mappa-webhooks/conformance";
import { Hono } from "hono";
import * as adapterModule from "../src/index.js";
import { type MappaWebhookVariables, mappaWebhook } from "../src/index.js";

describeConformance("Hono on @hono/node-server", async (options) => {
  const app = new Hono<{ Variables: MappaWebhookVariables }>();
  // Anything that reached Hono's own error handling.
  const frameworkErrors: unknown[] = [];
  app.onError((error, c) => {
    frameworkErrors.push(error);
    return c.text("Internal Server Error", 500);
  });
  app.use("/webhooks/mappa", mappaWebhook(options));
  app.post("/api/echo", async (c) => c.json({ echo: await c.req.json() }));
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
      resolve(started),
    );
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    webhookUrl: `${origin}/webhooks/mappa`,
    jsonUrl: `${origin}/api/echo`,
    frameworkErrors: () => frameworkErrors,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
});

describeAdapterExports(
  "@mappa-webhooks/hono",
  adapterModule,
  new URL("../src/index.ts", import.meta.url),
);
