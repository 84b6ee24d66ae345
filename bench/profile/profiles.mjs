// CPU profiles of missed targets, taken during `pnpm bench`: a focused loop for a micro
// contender, or a server process under one load run for an adapter.
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { WEBHOOK_PATH } from "../lib/fixtures.mjs";
import { runLoad, startServer } from "../lib/processes.mjs";
import { summarizeProfile } from "./summarize.mjs";

const FOCUS = fileURLToPath(new URL("./focus.mjs", import.meta.url));
const TOP_FRAMES = 12;

function withProfileDir(take) {
  const dir = mkdtempSync(join(tmpdir(), "mappa-bench-prof-"));
  return take(dir)
    .then(() => {
      const file = readdirSync(dir).find((name) => name.endsWith(".cpuprofile"));
      if (file === undefined) throw new Error("no .cpuprofile was written");
      return summarizeProfile(join(dir, file), TOP_FRAMES);
    })
    .finally(() => rmSync(dir, { recursive: true, force: true }));
}

/** Profiles `id` (a micro contender) at `size` bytes for `ms` milliseconds. */
export function profileMicro(id, size = 1024, ms = 2000) {
  return withProfileDir(
    (dir) =>
      new Promise((resolve, reject) => {
        execFile(
          process.execPath,
          ["--cpu-prof", `--cpu-prof-dir=${dir}`, FOCUS, id, String(size), String(ms)],
          { timeout: ms + 30_000 },
          (error) => (error ? reject(error) : resolve()),
        );
      }),
  );
}

/** Profiles the `framework` adapter's server during one load run of `seconds`. */
export function profileServer(framework, variant = "adapter", seconds = 3, connections = 10) {
  return withProfileDir(async (dir) => {
    const server = await startServer(framework, variant, {}, [
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
    ]);
    try {
      await runLoad(`${server.url}${WEBHOOK_PATH}`, seconds, connections, 1024);
    } finally {
      await server.close();
    }
  });
}
