import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseEvent } from "@mappa-webhooks/core";
import { type Child, startProcess } from "@mappa-webhooks/tooling/test-helpers";
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

/** Starts `<runtime> test/fixtures/<script> ...args` (runtime: this Node by default). */
export function startFixture(
  script: string,
  env: Record<string, string>,
  options: { runtime?: string; args?: string[] } = {},
): Child {
  for (const built of ["../dist/index.js", "../../express/dist/index.js"]) {
    if (!existsSync(new URL(built, import.meta.url))) {
      throw new Error(
        `${built} is missing: build first (pnpm turbo run build --filter=@mappa-webhooks/sqlite...).`,
      );
    }
  }
  const path = new URL(`./fixtures/${script}`, import.meta.url).pathname;
  return startProcess({
    ...(options.runtime === undefined ? {} : { command: options.runtime }),
    args: [path, ...(options.args ?? [])],
    env: { ...process.env, MAPPA_SQLITE_DRIVER: DRIVER, ...env },
    label: script,
  });
}

/** Resolves the webhook URL a child printed as `listening on http://127.0.0.1:<port>`. */
export async function webhookUrlOf(child: Child, timeoutMs = 30_000): Promise<string> {
  const [, base] = await child.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/, timeoutMs);
  return `${base}/webhooks/mappa`;
}

/** POSTs `event` once, signed with {@link SECRET}; resolves the status and parsed JSON body. */
export async function deliver(
  url: string,
  event: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const { signPayload } = await import("@mappa-webhooks/testing");
  const payload = JSON.stringify(event);
  const signature = await signPayload({ payload, secret: SECRET });
  const response = await fetch(url, {
    method: "POST",
    body: payload,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The idempotency key the core derives for `event` (what the stores and the fixtures key by). */
export function keyOf(event: unknown): string {
  const key = parseEvent(JSON.stringify(event)).idempotencyKey;
  if (key === undefined) throw new Error("test event without an idempotency key");
  return key;
}
