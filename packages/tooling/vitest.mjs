// Shared test configuration. When MAPPA_TEST_REPORT_DIR is set (CI), every package also
// writes vitest's JSON report there, so .ci/run can total the real pass/fail counts.
import { basename } from "node:path";
import { defineConfig } from "vitest/config";

/** @param {string} name a file-safe name for this package's report */
export function reporters(name) {
  const dir = process.env.MAPPA_TEST_REPORT_DIR;
  if (!dir) return ["default"];
  return ["default", ["json", { outputFile: `${dir}/${basename(name)}.json` }]];
}

/**
 * @param {string} name
 * @param {import("vitest/config").ViteUserConfig["test"]} [test]
 */
export function packageTestConfig(name, test = {}) {
  return defineConfig({
    test: {
      include: ["src/**/*.test.ts", "test/**/*.test.ts"],
      testTimeout: 20_000,
      hookTimeout: 60_000,
      reporters: reporters(name),
      ...test,
    },
  });
}
