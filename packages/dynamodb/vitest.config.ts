import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("dynamodb", {
  testTimeout: 120_000,
  hookTimeout: 60_000,
});
