import { fileURLToPath } from "node:url";
import { reporters } from "@mappa-webhooks/tooling/vitest";
import { defineConfig } from "vitest/config";

const webEngine = fileURLToPath(new URL("./src/hmac/web.ts", import.meta.url));
const webChannel = fileURLToPath(new URL("./src/diagnostics/web.ts", import.meta.url));

// Inline projects do not inherit the root's timeouts: each sets its own. The package test packs,
// installs and spawns Node several times, which takes a while on a busy machine.
const timeouts = { testTimeout: 120_000, hookTimeout: 120_000 };

// The same suite runs twice: once on node:crypto, once with the Web Crypto engine swapped in.
export default defineConfig({
  test: {
    reporters: reporters("core"),
    ...timeouts,
    projects: [
      {
        test: {
          ...timeouts,
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
        resolve: {
          alias: [
            { find: /^.*\/hmac\/engine\.js$/, replacement: webEngine },
            { find: /^.*\/diagnostics\/channel\.js$/, replacement: webChannel },
          ],
        },
        test: {
          ...timeouts,
          name: "web-crypto",
          env: { EXPECTED_CRYPTO_RUNTIME: "web" },
          include: ["test/**/*.test.ts"],
          exclude: ["test/package.test.ts", "test/readme.test.ts", "test/layout.test.ts"],
        },
      },
    ],
  },
});
