import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { waitFor } from "./helpers.js";

/** A loopback port nothing listens on: bound once, then released (redis-server needs it up front). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/**
 * A redis-server of the test's own, on a free loopback port, that the test can kill and start
 * again. Every write is in its append-only file (`appendfsync always`), so a restart keeps the
 * queue's jobs, as a production Redis with AOF would.
 */
export interface OwnRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL by default: nothing is flushed beyond what the AOF holds). */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and data directory; resolves once it answers PING. */
  start(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open and nothing is answered. */
  pause(): void;
  /** Lets a frozen server carry on (SIGCONT): it then runs what it was sent meanwhile. */
  resume(): void;
  /** Runs one command on a short-lived client of its own. */
  command(...args: string[]): Promise<unknown>;
  /** Stops the server and removes its directory. */
  destroy(): Promise<void>;
}

export async function startOwnRedis(name: string): Promise<OwnRedis> {
  const dir = mkdtempSync(join(tmpdir(), `mappa-redis-${name}-`));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let server: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const command = async (...args: string[]) => {
    const client = new Redis({
      host: "127.0.0.1",
      port,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
    });
    client.on("error", () => {});
    try {
      await client.connect();
      const [cmd, ...rest] = args as [string, ...string[]];
      return await client.call(cmd, ...rest);
    } finally {
      client.disconnect();
    }
  };

  const start = async () => {
    let spawnError: Error | undefined;
    const child = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--daemonize",
        "no",
      ],
      { stdio: "ignore" },
    );
    child.once("error", (error) => {
      spawnError = new Error(`could not start redis-server for the ${name} test: ${error.message}`);
    });
    server = child;
    exited = new Promise((resolve) => child.once("exit", () => resolve()));
    await waitFor(
      async () => {
        if (spawnError !== undefined) throw spawnError;
        if (child.exitCode !== null)
          throw new Error(`redis-server on port ${port} exited at start`);
        try {
          return (await command("PING")) === "PONG";
        } catch {
          return false;
        }
      },
      30_000,
      50,
    );
  };

  const stop = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (server === undefined || server.exitCode !== null || server.signalCode !== null) return;
    server.kill(signal);
    await exited;
  };

  await start();
  return {
    port,
    url,
    stop,
    start,
    command,
    pause: () => void server?.kill("SIGSTOP"),
    resume: () => void server?.kill("SIGCONT"),
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
