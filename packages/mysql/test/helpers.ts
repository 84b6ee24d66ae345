import { randomBytes } from "node:crypto";
import { parseEvent } from "@mappa-webhooks/core";
import { signPayload } from "@mappa-webhooks/testing";
import { storeTestKit } from "@mappa-webhooks/tooling/test-helpers";
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

/** `startFixture`, `webhookUrlOf`, `deliver` (signed with {@link SECRET}) and `keyOf`. */
export const { startFixture, webhookUrlOf, deliver, keyOf } = storeTestKit({
  testDir: new URL(".", import.meta.url),
  built: ["../dist/index.js", "../../express/dist/index.js"],
  buildHint: "pnpm turbo run build --filter=@mappa-webhooks/mysql...",
  secret: SECRET,
  sign: signPayload,
  parseEvent,
});
