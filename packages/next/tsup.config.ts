import { packageConfig } from "@mappa-webhooks/tooling/tsup";

// Neutral platform: the same build runs in Next's Node.js and Edge runtimes. Next bundles it
// with the core's conditions, so the Edge bundle gets the core's Web Crypto build.
export default packageConfig({ entry: { index: "src/index.ts" }, platform: "neutral" });
