import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { packageConfig } from "@mappa-webhooks/tooling/tsup";
import type { Options } from "tsup";

type Plugin = NonNullable<Options["esbuildPlugins"]>[number];

const { version } = JSON.parse(
  readFileSync(new URL("./package.json", import.meta.url), "utf8"),
) as {
  version: string;
};

/**
 * `import text from "./client.ts?bundle"`: that file bundled on its own for the browser (an
 * IIFE, its imports included), inlined as a string. The inspector's page script is built so: a
 * real module with shared types, not a function's `toString()`.
 */
const browserBundle: Plugin = {
  name: "browser-bundle",
  setup(build) {
    build.onResolve({ filter: /\?bundle$/ }, (args) => ({
      path: resolve(args.resolveDir, args.path.replace(/\?bundle$/, "")),
      namespace: "browser-bundle",
    }));
    build.onLoad({ filter: /.*/, namespace: "browser-bundle" }, async (args) => {
      const result = await build.esbuild.build({
        entryPoints: [args.path],
        bundle: true,
        write: false,
        format: "iife",
        platform: "browser",
        target: "es2022",
        legalComments: "none",
        metafile: true,
      });
      const text = result.outputFiles[0]?.text ?? "";
      return {
        contents: `export default ${JSON.stringify(text)};`,
        loader: "js",
        resolveDir: dirname(args.path),
        watchFiles: Object.keys(result.metafile.inputs).map((file) => resolve(file)),
      };
    });
  },
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
    esbuildPlugins: [browserBundle],
  }),
  define: { __CLI_VERSION__: JSON.stringify(version) },
};
