import { packageConfig } from "@mappa-webhooks/tooling/tsup";

export default packageConfig({
  entry: { index: "src/index.ts" },
  platform: "neutral",
});
