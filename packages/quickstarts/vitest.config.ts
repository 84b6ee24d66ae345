import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

// The quick starts are installed from the npm registry and started as processes: the set-up
// (pack, install) gets up to 15 minutes, each quick start up to 3 on a busy machine.
export default packageTestConfig("quickstarts", {
  testTimeout: 180_000,
  hookTimeout: 900_000,
  fileParallelism: false,
});
