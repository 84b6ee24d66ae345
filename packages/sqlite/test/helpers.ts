import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseEvent } from "@mappa-webhooks/core";
import { signPayload } from "@mappa-webhooks/testing";
import { storeTestKit } from "@mappa-webhooks/tooling/test-helpers";
import type { SqliteDriverName } from "../src/index.js";

export const SECRET = "whsec_sqlite_test_secret";

/** The driver these tests run on: better-sqlite3 on Node 20, node:sqlite when asked. */
export const DRIVER = (process.env.MAPPA_SQLITE_DRIVER ?? "better-sqlite3") as SqliteDriverName;

const dirs: string[] = [];
/** A fresh folder for database files, removed when the test file ends (see cleanupDirs). */
export function tempDir(name: string): string {
  const dir = mkdtempSync(
    join(tmpdir(), `mappa-sqlite-${name}-${randomBytes(3).toString("hex")}-`),
  );
  dirs.push(dir);
  return dir;
}

/** A database file name no other test shares. */
export function tempFile(name: string): string {
  return join(tempDir(name), "mappa-webhooks.db");
}

export function cleanupDirs(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export type { Child } from "@mappa-webhooks/tooling/test-helpers";
export { sleep, waitFor } from "@mappa-webhooks/tooling/test-helpers";

/**
 * `startFixture` (`<runtime> test/fixtures/<script> ...args`, on {@link DRIVER}; runtime: this
 * Node by default), `webhookUrlOf`, `deliver` (signed with {@link SECRET}) and `keyOf`.
 */
export const { startFixture, webhookUrlOf, deliver, keyOf } = storeTestKit({
  testDir: new URL(".", import.meta.url),
  built: ["../dist/index.js", "../../express/dist/index.js"],
  buildHint: "pnpm turbo run build --filter=@mappa-webhooks/sqlite...",
  env: { MAPPA_SQLITE_DRIVER: DRIVER },
  secret: SECRET,
  sign: signPayload,
  parseEvent,
});
