import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMappaWebhooks,
  type MappaWebhooksOptions,
  readBodyWithLimit,
} from "@mappa-webhooks/core";
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

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until `check` is true, polling every `everyMs`, at most `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

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
export interface Child {
  process: ChildProcess;
  output: string[];
  /** Resolves with the first printed line matching `pattern`; rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Resolves once the process exited. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

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
  const script = path.split("/").pop() ?? path;
  const child = spawn(process.execPath, [path, ...args], {
    env: { ...process.env, REDIS_URL, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const listeners = new Set<() => void>();
  let buffered = "";
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    output.push(...lines);
    for (const listener of [...listeners]) listener();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  exited.then(() => {
    for (const listener of [...listeners]) listener();
  });
  return {
    process: child,
    output,
    exited,
    waitForLine(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const line of output) {
            const match = line.match(pattern);
            if (match !== null) {
              done();
              resolve(match);
              return;
            }
          }
          if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`${script} exited before printing ${pattern}:\n${output.join("\n")}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(
              `${script} did not print ${pattern} within ${timeoutMs} ms:\n${output.join("\n")}`,
            ),
          );
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async kill(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}
