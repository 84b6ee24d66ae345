import { describeAdapterExports, describeConformance } from "@mappa-webhooks/conformance";
import Fastify from "fastify";
import * as adapterModule from "../src/index.js";
import { mappaWebhookPlugin } from "../src/index.js";

describeConformance("Fastify 5", async (options) => {
  const app = Fastify();
  // Anything that reached Fastify's own error handling, in any route.
  const frameworkErrors: unknown[] = [];
  app.addHook("onError", async (_request, _reply, error) => {
    frameworkErrors.push(error);
  });
  await app.register(mappaWebhookPlugin, options);
  // An ordinary route with Fastify's own JSON parsing, beside the webhook.
  app.post("/api/echo", async (request) => ({ echo: request.body }));
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  return {
    webhookUrl: `${address}/webhooks/mappa`,
    jsonUrl: `${address}/api/echo`,
    frameworkErrors: () => frameworkErrors,
    close: () => app.close(),
  };
});

describeAdapterExports(
  "@mappa-webhooks/fastify",
  adapterModule,
  new URL("../src/index.ts", import.meta.url),
);
