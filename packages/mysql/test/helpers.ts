import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { parseEvent } from "@mappa-webhooks/core";
import { type Child, startProcess } from "@mappa-webhooks/tooling/test-helpers";
import mysql from "mysql2/promise";
import { migrate } from "../src/index.js";

export const MYSQL_URL = process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test";
export const SECRET = "whsec_mysql_test_secret";

export type { Child } from "@mappa-webhooks/tooling/test-helpers";
export { sleep, waitFor } from "@mappa-webhooks/tooling/test-helpers";

/** The URL of `database` on the test server. */
export function urlOf(database: string): string {
  const url = new URL(MYSQL_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

export function createPool(database: string, options: mysql.PoolOptions = {}): mysql.Pool {
  return mysql.createPool({ uri: urlOf(database), connectionLimit: 10, ...options });
}

/** A database of its own (CREATE DATABASE mappa_test_<random>), migrated, and its drop. */
export interface TestDatabase {
  pool: mysql.Pool;
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(
  label: string,
  options: { migrate?: boolean } = {},
): Promise<TestDatabase> {
  const name = `mappa_test_${label}_${process.pid}_${randomBytes(4).toString("hex")}`;
  const admin = await mysql.createConnection({ uri: MYSQL_URL });
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.end();
  const pool = createPool(name);
  if (options.migrate !== false) await migrate({ pool });
  return {
    pool,
    name,
    url: urlOf(name),
    async drop() {
      await pool.end();
      const again = await mysql.createConnection({ uri: MYSQL_URL });
      await again.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await again.end();
    },
  };
}

/** Starts `node test/fixtures/<script>` with `env` added to this process's environment. */
export function startFixture(script: string, env: Record<string, string>): Child {
  for (const built of ["../dist/index.js", "../../express/dist/index.js"]) {
    if (!existsSync(new URL(built, import.meta.url))) {
      throw new Error(
        `${built} is missing: build first (pnpm turbo run build --filter=@mappa-webhooks/mysql...).`,
      );
    }
  }
  const path = new URL(`./fixtures/${script}`, import.meta.url).pathname;
  return startProcess({ args: [path], env: { ...process.env, ...env }, label: script });
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
