import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMappaWebhooks,
  idempotencyKeyFor,
  type MappaWebhooksOptions,
  readBodyWithLimit,
} from "@mappa-webhooks/core";
import { type Child, startProcess } from "@mappa-webhooks/tooling/test-helpers";
import { Redis } from "ioredis";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
export const SECRET = "whsec_redis_test_secret";

/** A key prefix no other test run shares, so runs never see each other's keys. */
export function uniquePrefix(name: string): string {
  return `mappa-test:${name}:${process.pid}:${randomBytes(4).toString("hex")}`;
}

/** A client of the test Redis that gives up on a command after one retry. */
export function connect(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
}

/** Deletes every key under `prefix` (bounded SCAN; never FLUSHALL). */
export async function deleteKeys(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  for (let round = 0; round < 10_000; round++) {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (keys.length > 0) deleted += await redis.unlink(...keys);
    cursor = next;
    if (cursor === "0") break;
  }
  return deleted;
}

/**
 * The idempotency key the core derives for a test event (its `event.idempotencyKey` once
 * received): a known event's is its job outcome, `~job:<type>:<data.jobId>`, not its `id`.
 * The fixtures name their Redis keys (effects, markers, `stalling` lines) by it.
 */
export function keyOf(event: {
  id?: string;
  type: string;
  data?: { jobId?: string } | Record<string, unknown>;
}): string {
  const jobId = event.data?.jobId;
  const key = idempotencyKeyFor({
    id: event.id,
    type: event.type,
    jobId: typeof jobId === "string" ? jobId : undefined,
  });
  if (key === undefined) throw new Error(`event ${JSON.stringify(event)} has no idempotency key`);
  return key;
}

/** `text` as a regular expression source that matches exactly it. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Counts the keys matching `pattern` (bounded SCAN, not KEYS). */
export async function countKeys(redis: Redis, pattern: string): Promise<number> {
  let cursor = "0";
  let count = 0;
  for (let round = 0; round < 10_000; round++) {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    count += keys.length;
    cursor = next;
    if (cursor === "0") break;
  }
  return count;
}

/**
 * The messages of an error and of its `cause` chain, outermost first: the receiver may wrap
 * what the store or the hand-off threw (`See \`cause\``), so tests look at the whole chain.
 */
export function messageChain(error: unknown): string {
  const messages: string[] = [];
  let current = error;
  for (let depth = 0; depth < 10 && current instanceof Error; depth++) {
    messages.push(current.message);
    current = current.cause;
  }
  return messages.join(" <- ");
}

export { sleep, waitFor } from "@mappa-webhooks/tooling/test-helpers";

/** A receiver on plain node:http through the core's `handle` (the smallest adapter there is). */
export async function startNodeReceiver(
  options: MappaWebhooksOptions,
): Promise<{ url: string; close(): Promise<void> }> {
  const webhooks = createMappaWebhooks(options);
  const server: Server = createServer(async (req, res) => {
    const rawBody = await readBodyWithLimit(req, webhooks.maxBodyBytes);
    const result = await webhooks.handle({
      method: req.method ?? "GET",
      headers: req.headers,
      rawBody,
    });
    res.writeHead(result.status, result.headers).end(result.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** BullMQ connection options for the test Redis. */
export function bullConnection(): { host: string; port: number } {
  const url = new URL(REDIS_URL);
  return { host: url.hostname, port: Number(url.port || 6379) };
}

/** A child process running one of the fixtures, with what it printed. */
export type { Child } from "@mappa-webhooks/tooling/test-helpers";

/** Starts `node test/fixtures/<script>` with `env` added to this process's environment. */
export function startFixture(script: string, env: Record<string, string>): Child {
  return startScript(new URL(`./fixtures/${script}`, import.meta.url).pathname, env);
}

/** Starts `node <path> ...args` with `env` added to this process's environment. */
export function startScript(path: string, env: Record<string, string>, args: string[] = []): Child {
  // The scripts import the built packages, as users do.
  for (const built of [
    "../dist/index.js",
    "../../express/dist/index.js",
    "../../testing/dist/index.js",
  ]) {
    if (!existsSync(new URL(built, import.meta.url))) {
      throw new Error(
        `${built} is missing: build first (pnpm --filter @mappa-webhooks/redis... build).`,
      );
    }
  }
  return startProcess({ args: [path, ...args], env: { ...process.env, REDIS_URL, ...env } });
}
