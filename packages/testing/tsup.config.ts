import { packageConfig } from "@mappa-webhooks/tooling/tsup";

// Neutral: the kit runs in any test runner and runtime (Node, Deno, Bun, workerd). The
// `emulator` entry only re-exports @mappa-webhooks/emulator (Node), kept external.
export default packageConfig({
  entry: { index: "src/index.ts", emulator: "src/emulator.ts" },
  platform: "neutral",
});
