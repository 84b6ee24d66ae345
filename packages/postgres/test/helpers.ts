import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
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

/** A child process running a script, with what it printed. */
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
  const script = path.split("/").pop() ?? path;
  const child = spawn(process.execPath, [path, ...args], {
    env: { ...process.env, DATABASE_URL, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    ...(cwd === undefined ? {} : { cwd }),
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
    child.once("exit", (code) => {
      if (buffered !== "") output.push(buffered);
      resolve(code);
    }),
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
