import { readFileSync } from "node:fs";
import { packageConfig } from "@mappa-webhooks/tooling/tsup";

const { version } = JSON.parse(
  readFileSync(new URL("./package.json", import.meta.url), "utf8"),
) as {
  version: string;
};

// Executables only: ESM for Node, no type declarations. The shebang in src/cli.ts is kept.
export default {
  ...packageConfig({
    entry: {
      cli: "src/cli.ts",
      demo: "src/demo.ts",
      "demo-receiver": "src/demo-receiver.ts",
      "demo-emulator": "src/demo-emulator.ts",
    },
    platform: "node",
    format: ["esm"],
    dts: false,
  }),
  define: { __CLI_VERSION__: JSON.stringify(version) },
};
