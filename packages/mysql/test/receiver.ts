// An Express server on 127.0.0.1:0 with @mappa-webhooks/express, for tests over real HTTP.
import type { MappaWebhooksOptions } from "@mappa-webhooks/core";
import { type RunningReceiver, serveReceiver } from "@mappa-webhooks/tooling/test-helpers";

export type { RunningReceiver } from "@mappa-webhooks/tooling/test-helpers";

export async function startReceiver(options: MappaWebhooksOptions): Promise<RunningReceiver> {
  const { default: express } = await import("express");
  const { mappaWebhook } = await import("@mappa-webhooks/express");
  return serveReceiver(express().use(mappaWebhook(options)));
}
