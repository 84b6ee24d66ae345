import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { type Running, SECRET, start, testEnv } from "./helpers.js";

export const EXPRESS_EXAMPLE = fileURLToPath(
  new URL("../../../examples/express/server.js", import.meta.url),
);

/** A server process (e.g. examples/express) whose stdout is kept line by line. */
export interface AppProcess {
  url: string;
  lines: string[];
  waitFor(match: RegExp, from?: number, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Starts `node <script>` with PORT=0 and waits for its `listening on <url>` line. */
export async function startApp(
  script: string,
  env: Record<string, string> = {},
): Promise<AppProcess> {
  const child: ChildProcess = spawn(process.execPath, [script], {
    env: testEnv({ PORT: "0", HOST: "127.0.0.1", MAPPA_WEBHOOK_SECRET: SECRET, ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let stderr = "";
  let buffered = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    lines.push(...parts);
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = once(child, "close");
  const waitFor = async (match: RegExp, from = 0, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.slice(from).find((line) => match.test(line));
      if (found !== undefined) return found;
      if (child.exitCode !== null) throw new Error(`${script} exited: ${stderr}`);
      if (Date.now() > deadline) {
        throw new Error(
          `no line matching ${match} from ${script}:\n${lines.join("\n")}\n${stderr}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const first = await waitFor(/^listening on http:\/\//);
  return {
    url: first.replace("listening on ", ""),
    lines,
    waitFor,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** `listen` on free ports; resolves once both addresses are printed. */
export async function startInspecting(
  args: string[] = [],
  env: Record<string, string | undefined> = {},
): Promise<{ listener: Running; url: string; inspector: string }> {
  const listener = start(["listen", "--port", "0", "--secret", SECRET, ...args], env);
  const first = await listener.waitFor(/^listening on /);
  const inspectorLine = await listener.waitFor(/^inspector on /);
  return {
    listener,
    url: first.replace("listening on ", ""),
    inspector: inspectorLine.replace("inspector on ", ""),
  };
}

/** A raw HTTP request, so tests can send any Host or Origin header (fetch cannot). */
export function rawRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? "GET", headers: options.headers ?? {}, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Polls `read` until `done` holds (bounded), for state that arrives asynchronously. */
export async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met in time: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
