// Vitest global setup: the Node 20 tests run on better-sqlite3, whose native module pnpm does
// not build (see scripts/build-better-sqlite3.mjs). The script builds it once if it is missing,
// in a process of its own (a native module cannot be loaded again in one process once rebuilt).
// Under Node 22.13+ with MAPPA_SQLITE_DRIVER=node:sqlite nothing is needed.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function driverAvailable(): void {
  if ((process.env.MAPPA_SQLITE_DRIVER ?? "better-sqlite3") !== "better-sqlite3") return;
  const script = fileURLToPath(new URL("../scripts/build-better-sqlite3.mjs", import.meta.url));
  execFileSync(process.execPath, [script], { stdio: "inherit", timeout: 30 * 60_000 });
}
