import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { runProcess, startProcess } from "@mappa-webhooks/tooling/test-helpers";

export const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
export const DEMO = fileURLToPath(new URL("../dist/demo.js", import.meta.url));
export const SECRET = "whsec_cli_test_9f8e7d";

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A clean environment: no secret, no colour settings, unless a test sets them. */
export function testEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ["MAPPA_WEBHOOK_SECRET", "NO_COLOR", "FORCE_COLOR", "REDIS_URL"])
    delete env[name];
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

/** Runs `node <script> ...args` to completion (bounded by `timeoutMs`). */
export function run(
  args: string[],
  options: {
    env?: Record<string, string | undefined>;
    input?: string;
    script?: string;
    timeoutMs?: number;
  } = {},
): Promise<RunResult> {
  return runProcess({
    args: [options.script ?? CLI, ...args],
    env: testEnv(options.env),
    ...(options.input === undefined ? {} : { input: options.input }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
}

/** A long-running CLI process (e.g. `listen`) whose output is read line by line. */
export interface Running {
  child: ChildProcess;
  lines: string[];
  stderr(): string;
  /** The first line at or after index `from` that matches. */
  waitFor(
    match: RegExp | ((line: string) => boolean),
    from?: number,
    timeoutMs?: number,
  ): Promise<string>;
  stop(): Promise<number | null>;
}

export function start(args: string[], env: Record<string, string | undefined> = {}): Running {
  // A graceful stop may take a while on a busy machine: SIGKILL only long after SIGTERM.
  const child = startProcess({ args: [CLI, ...args], env: testEnv(env), killAfterMs: 60_000 });
  return {
    child: child.process,
    lines: child.stdout,
    stderr: child.stderr,
    async waitFor(match, from = 0, timeoutMs = 10_000) {
      const test = typeof match === "function" ? match : (line: string) => match.test(line);
      return child.waitForMatch(test, { timeoutMs, from, stream: "stdout" });
    },
    async stop() {
      await child.kill("SIGTERM");
      return child.exited;
    },
  };
}

/** Starts `listen` on a free port and resolves with its webhook URL. */
export async function startListen(
  args: string[] = [],
  env: Record<string, string | undefined> = {},
): Promise<{ listener: Running; url: string }> {
  const listener = start(["listen", "--port", "0", "--secret", SECRET, ...args], env);
  const first = await listener.waitFor(/listening|"kind":"listening"/);
  const url = first.startsWith("{")
    ? (JSON.parse(first) as { url: string }).url
    : first.replace("listening on ", "");
  return { listener, url };
}

/** A port nothing listens on: bound once, then released. */
export { freePort } from "@mappa-webhooks/tooling/test-helpers";

export interface Recorded {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A real loopback server answering `statuses[i]` to the i-th request (then the last one). */
export async function recordingServer(statuses: number[]): Promise<{
  url: string;
  received: Recorded[];
  close(): Promise<void>;
}> {
  const received: Recorded[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      const status = statuses[Math.min(received.length - 1, statuses.length - 1)] ?? 200;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(status >= 400 ? '{"error":"handler_failed"}' : '{"received":true}');
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
