import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

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
export async function run(
  args: string[],
  options: {
    env?: Record<string, string | undefined>;
    input?: string;
    script?: string;
    timeoutMs?: number;
  } = {},
): Promise<RunResult> {
  const child = spawn(process.execPath, [options.script ?? CLI, ...args], {
    env: testEnv(options.env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  child.stdin.end(options.input ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
  const [code] = (await once(child, "close")) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
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
  const child = spawn(process.execPath, [CLI, ...args], {
    env: testEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let err = "";
  let buffered = "";
  const waiters = new Set<() => void>();
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    lines.push(...parts);
    for (const wake of waiters) wake();
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
  });
  const exited = once(child, "close");
  return {
    child,
    lines,
    stderr: () => err,
    async waitFor(match, from = 0, timeoutMs = 10_000) {
      const test = typeof match === "function" ? match : (line: string) => match.test(line);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.slice(from).find(test);
        if (found !== undefined) return found;
        if (child.exitCode !== null) throw new Error(`process exited: ${err}`);
        const left = deadline - Date.now();
        if (left <= 0)
          throw new Error(`no line matching ${String(match)} in:\n${lines.join("\n")}\n${err}`);
        await new Promise<void>((wake) => {
          const done = () => {
            clearTimeout(timer);
            waiters.delete(done);
            wake();
          };
          const timer = setTimeout(done, Math.min(left, 200));
          waiters.add(done);
        });
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const [code] = (await exited) as [number | null];
      return code;
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
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

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
