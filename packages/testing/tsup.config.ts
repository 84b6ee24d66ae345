import { packageConfig } from "@mappa-webhooks/tooling/tsup";

// Neutral: the kit runs in any test runner and runtime (Node, Deno, Bun, workerd).
export default packageConfig({ entry: { index: "src/index.ts" }, platform: "neutral" });
