import { packageConfig } from "@mappa-webhooks/tooling/tsup";

// Node only: the emulator is an HTTP server (node:http) that sends webhooks with fetch.
export default packageConfig({ entry: { index: "src/index.ts" }, platform: "node" });
