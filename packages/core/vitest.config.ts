import { fileURLToPath } from "node:url";
import { reporters } from "@mappa-webhooks/tooling/vitest";
import { defineConfig } from "vitest/config";

const webEngine = fileURLToPath(new URL("./src/hmac/web.ts", import.meta.url));

// The same suite runs twice: once on node:crypto, once with the Web Crypto engine swapped in.
export default defineConfig({
  test: {
    reporters: reporters("core"),
    testTimeout: 60_000,
    projects: [
      {
        test: {
          name: "node-crypto",
          env: { EXPECTED_CRYPTO_RUNTIME: "node" },
          include: ["test/**/*.test.ts"],
          typecheck: {
            enabled: true,
            include: ["test/**/*.test-d.ts"],
            tsconfig: "./tsconfig.json",
          },
        },
      },
      {
        resolve: { alias: [{ find: /^.*\/hmac\/engine\.js$/, replacement: webEngine }] },
        test: {
          name: "web-crypto",
          env: { EXPECTED_CRYPTO_RUNTIME: "web" },
          include: ["test/**/*.test.ts"],
          exclude: ["test/package.test.ts"],
        },
      },
    ],
  },
});
