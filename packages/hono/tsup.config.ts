import { packageConfig } from "@mappa-webhooks/tooling/tsup";

// Neutral platform: the middleware runs wherever Hono runs (Node, Workers, Deno, Bun).
export default packageConfig({ entry: { index: "src/index.ts" }, platform: "neutral" });
