// The core's receiver (createMappaWebhooks) behind node:http on 127.0.0.1:0, for tests over
// real HTTP without a framework.
import { createMappaWebhooks, type MappaWebhooksOptions } from "@mappa-webhooks/core";
import {
  coreListener,
  type RunningReceiver,
  serveReceiver,
} from "@mappa-webhooks/tooling/test-helpers";

export type { RunningReceiver } from "@mappa-webhooks/tooling/test-helpers";

export function startReceiver(options: MappaWebhooksOptions): Promise<RunningReceiver> {
  return serveReceiver(coreListener(createMappaWebhooks(options)));
}
