// The example on Cloudflare Workers: `npx wrangler dev` locally, `npx wrangler deploy` to ship.
// Set the secret with `npx wrangler secret put MAPPA_WEBHOOK_SECRET` (or .dev.vars locally).
import { createApp } from "./src/app.js";

/** @type {ReturnType<typeof createApp> | undefined} */
let app;

export default {
  /**
   * @param {Request} request
   * @param {{ MAPPA_WEBHOOK_SECRET: string }} env
   * @param {{ waitUntil(promise: Promise<unknown>): void, passThroughOnException(): void }} ctx
   */
  fetch(request, env, ctx) {
    // One app per isolate, so the in-memory deduplication sees every delivery it receives.
    app ??= createApp(env.MAPPA_WEBHOOK_SECRET);
    return app.fetch(request, env, ctx);
  },
};
