// Makes sure better-sqlite3 (a dev dependency, for the tests on Node 20) has its native module.
// pnpm does not run its install script (it would download Node's headers or a prebuilt binary,
// and this project installs from the npm registry only), so it is compiled here, once, against
// the headers of the Node that runs this script (<prefix>/include/node). A second run finds
// the module and returns at once. Usage: node scripts/build-better-sqlite3.mjs
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";

const require = createRequire(import.meta.url);

/** Loads better-sqlite3 and opens a database, or says why it cannot. */
function problem() {
  try {
    const Database = require("better-sqlite3");
    new Database(":memory:").close();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

export function ensureBetterSqlite3() {
  const before = problem();
  if (before === undefined) return;
  const dir = dirname(require.resolve("better-sqlite3/package.json"));
  const nodedir = resolve(process.execPath, "..", "..");
  if (!existsSync(join(nodedir, "include", "node", "node_api.h"))) {
    throw new Error(
      `better-sqlite3 has no native module (${before}), and Node's headers are not in ${nodedir}/include/node to build it.`,
    );
  }
  const gyp = require.resolve("node-gyp/bin/node-gyp.js");
  process.stderr.write(`[sqlite tests] building better-sqlite3 in ${dir} (a few minutes, once)\n`);
  execFileSync(
    process.execPath,
    [gyp, "rebuild", "--release", `--nodedir=${nodedir}`, `-j`, String(availableParallelism())],
    { cwd: dir, stdio: ["ignore", "ignore", "inherit"], timeout: 30 * 60_000 },
  );
  const after = problem();
  if (after !== undefined)
    throw new Error(`better-sqlite3 still does not load after building: ${after}`);
}

if (import.meta.url === `file://${process.argv[1]}`) ensureBetterSqlite3();
