import { packageConfig } from "@mappa-webhooks/tooling/tsup";

// Two entries: the store needs only a Redis client; `./queue` also needs bullmq (an optional peer).
export default packageConfig({
  entry: { index: "src/index.ts", queue: "src/queue.ts" },
  platform: "node",
});
