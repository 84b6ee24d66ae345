import { packageConfig } from "@mappa-webhooks/tooling/tsup";

// The library, and the `mappa-webhooks-postgres` executable (dist/cli.js, its shebang kept).
export default packageConfig({
  entry: { index: "src/index.ts", cli: "src/cli.ts" },
  platform: "node",
});
