import { fileURLToPath } from "node:url";
import { packageConfig } from "@mappa-webhooks/tooling/tsup";

const webEngine = fileURLToPath(new URL("./src/hmac/web.ts", import.meta.url));
const webChannel = fileURLToPath(new URL("./src/diagnostics/web.ts", import.meta.url));

// Two builds of one source: dist/node uses node:crypto, dist/web swaps in Web Crypto so edge
// bundles never see node:crypto. package.json `exports` conditions choose between them.
export default [
  {
    // `node` (the Node request path, `@mappa-webhooks/core/node`) shares one chunk with
    // `index`, so both see the same MappaWebhookError class.
    ...packageConfig({
      entry: { index: "src/index.ts", node: "src/node.ts" },
      outDir: "dist/node",
      platform: "node",
    }),
    splitting: true,
    clean: true,
  },
  {
    ...packageConfig({
      entry: { index: "src/index.ts" },
      outDir: "dist/web",
      esbuildPlugins: [
        {
          name: "web-hmac-engine",
          setup(build: { onResolve: (o: { filter: RegExp }, cb: () => { path: string }) => void }) {
            build.onResolve({ filter: /hmac\/engine\.js$/ }, () => ({ path: webEngine }));
            // diagnostics_channel without a static node: import (process.getBuiltinModule).
            build.onResolve({ filter: /diagnostics\/channel\.js$/ }, () => ({ path: webChannel }));
          },
        },
      ],
    }),
    clean: true,
  },
];
