import { describeAdapterExports, describeConformance } from "@mappa-webhooks/conformance";
import * as adapterModule from "../src/index.js";
import { createMappaPagesHandler, createMappaWebhookHandler } from "../src/index.js";
import { echo, serve } from "./serve.js";

describeConformance("Next.js App Router route handler", async (options) => {
  const handler = createMappaWebhookHandler(options);
  const served = await serve({ "/webhooks/mappa": handler, "/api/echo": echo });
  return {
    webhookUrl: `${served.origin}/webhooks/mappa`,
    jsonUrl: `${served.origin}/api/echo`,
    frameworkErrors: () => served.errors,
    close: served.close,
  };
});

describeConformance(
  "Next.js Pages Router API route",
  async (options) => {
    const handler = createMappaPagesHandler(options);
    const served = await serve({ "/api/webhooks/mappa": { api: handler } });
    return {
      webhookUrl: `${served.origin}/api/webhooks/mappa`,
      frameworkErrors: () => served.errors,
      close: served.close,
    };
  },
  { jsonRoute: false },
);

describeAdapterExports(
  "@mappa-webhooks/next",
  adapterModule,
  new URL("../src/index.ts", import.meta.url),
);
