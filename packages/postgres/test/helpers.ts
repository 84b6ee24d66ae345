import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { parseEvent } from "@mappa-webhooks/core";
import { type Child, startProcess } from "@mappa-webhooks/tooling/test-helpers";
import pg from "pg";
import { migrate } from "../src/index.js";

export const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const SECRET = "whsec_postgres_test_secret";

/** A schema name no other test run shares, so runs never see each other's rows. */
export function uniqueSchema(name: string): string {
  return `mappa_test_${name}_${process.pid}_${randomBytes(4).toString("hex")}`;
}

export function createPool(options: pg.PoolConfig = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10, ...options });
  // An idle client whose connection dies must not crash the test process.
  pool.on("error", () => {});
  return pool;
}

/** A pool, a fresh migrated schema, and a cleanup that drops it. */
export interface TestDatabase {
  pool: pg.Pool;
  schema: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(
  name: string,
  options: { migrate?: boolean; pool?: pg.PoolConfig } = {},
): Promise<TestDatabase> {
  const pool = createPool(options.pool);
  const schema = uniqueSchema(name);
  if (options.migrate !== false) await migrate({ pool, schema });
  return {
    pool,
    schema,
    async drop() {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    },
  };
}

/** A child process running a script, with what it printed. */
export type { Child } from "@mappa-webhooks/tooling/test-helpers";
export { sleep, waitFor } from "@mappa-webhooks/tooling/test-helpers";

/** Starts `node test/fixtures/<script>` with `env` added to this process's environment. */
export function startFixture(script: string, env: Record<string, string>): Child {
  return startScript(new URL(`./fixtures/${script}`, import.meta.url).pathname, env);
}

/** Starts `node <path> ...args` with `env` added to this process's environment. */
export function startScript(
  path: string,
  env: Record<string, string>,
  args: string[] = [],
  cwd?: string,
): Child {
  // The scripts import the built packages, as users do.
  for (const built of ["../dist/index.js", "../../express/dist/index.js"]) {
    if (!existsSync(new URL(built, import.meta.url))) {
      throw new Error(
        `${built} is missing: build first (pnpm turbo run build --filter=@mappa-webhooks/postgres...).`,
      );
    }
  }
  return startProcess({
    args: [path, ...args],
    env: { ...process.env, DATABASE_URL, ...env },
    ...(cwd === undefined ? {} : { cwd }),
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
  secret = SECRET,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const { signPayload } = await import("@mappa-webhooks/testing");
  const payload = JSON.stringify(event);
  const signature = await signPayload({ payload, secret });
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
