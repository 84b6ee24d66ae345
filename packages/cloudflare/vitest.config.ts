import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("cloudflare", {
  testTimeout: 120_000,
  hookTimeout: 180_000,
  fileParallelism: false,
});
