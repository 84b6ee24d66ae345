// Every README's quick start as a new user runs it: the workspace's packages packed once, ONE
// fresh npm project (real registry install) holding every tarball and whatever the READMEs'
// `npm install` lines name, then per quick start: its own file, `tsc` in strict mode (module
// nodenext, or the tsconfig the README states), started as a process, and sent a signed delivery
// in the shape Mappa sends today. Postgres and MySQL quick starts get a database of their own,
// Redis ones are checked for the key their event left.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { jobOutcomeKey, signPayload } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PRELUDES } from "./preludes.js";
import {
  codeBlocks,
  publishedPackages,
  type Quickstart,
  quickstarts,
  readmeOf,
  root,
} from "./readmes.js";

const run = promisify(execFile);
const all = quickstarts();
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const MYSQL_URL = process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test";

// What the project needs besides the READMEs' install lines: the TypeScript the repository
// builds with (the READMEs say `typescript`; the check must not change with each new major),
// and React's types, which a Next app made by create-next-app has (else `next dev` installs them).
// The excerpts' other libraries: Kysely (the Postgres README's query builder), @koa/router (the
// Koa README's routes), Vitest (the emulator README's tests).
const TOOLS = [
  "typescript@~5.9.3",
  "vitest@~4.1.0",
  "@types/react",
  "@types/react-dom",
  "kysely",
  "@koa/router",
  "@types/koa__router",
];

// The tsconfig a quick start gets unless its README states one: what `tsc --init` users have
// for Node ESM, in strict mode.
const DEFAULT_TSCONFIG = JSON.stringify(
  {
    compilerOptions: {
      target: "es2022",
      module: "nodenext",
      strict: true,
      noEmit: true,
      skipLibCheck: true,
    },
  },
  null,
  2,
);

let project: string;
const timings: string[] = [];

async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>) {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
    }),
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

// While editing READMEs, MAPPA_QUICKSTARTS_PROJECT=<dir> reuses a project this test installed
// (kept, not deleted): the set-up is skipped, every check still runs.
const reused = process.env.MAPPA_QUICKSTARTS_PROJECT;

beforeAll(async () => {
  if (reused) {
    project = reused;
    return;
  }
  const started = Date.now();
  project = mkdtempSync(join(tmpdir(), "mappa-quickstarts-"));
  const tarballs = join(project, "tarballs");
  mkdirSync(tarballs);
  const packages = publishedPackages();
  // turbo builds this package's dependencies first; a package added since is built here.
  for (const pkg of packages) {
    const main = String(pkg.manifest.main ?? pkg.manifest.module ?? "");
    if (!main || existsSync(join(pkg.dir, main))) continue;
    await run("npm", ["run", "build", "--silent"], { cwd: pkg.dir }).catch((error: unknown) => {
      throw new Error(
        `${pkg.name} is not built (${main} is missing) and \`npm run build\` failed there: ${String(error)}`,
      );
    });
  }
  // pnpm pack rewrites workspace: ranges to the real versions, as publishing does.
  await inParallel(packages, 4, async (pkg) => {
    await run("pnpm", ["pack", "--pack-destination", tarballs], { cwd: pkg.dir });
  });
  timings.push(`pack ${packages.length} packages: ${Date.now() - started} ms`);
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "quickstart-user", private: true, type: "module" }, null, 2),
  );
  const ours = new Set(packages.map((p) => p.name));
  const theirs = new Set<string>();
  for (const quickstart of all) {
    for (const name of quickstart.installs) if (!ours.has(name)) theirs.add(name);
  }
  theirs.delete("typescript");
  const installStarted = Date.now();
  await run(
    "npm",
    [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      ...readdirSync(tarballs).map((f) => `./tarballs/${f}`),
      ...[...theirs].sort(),
      ...TOOLS,
    ],
    { cwd: project, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, npm_config_yes: "true" } },
  );
  timings.push(`npm install: ${Date.now() - installStarted} ms`);
}, 900_000);

afterAll(async () => {
  if (timings.length > 0) console.log(`quickstarts: ${timings.join("; ")}`);
  if (project && !reused) rmSync(project, { recursive: true, force: true });
});

/** A process started for one quick start; killed with its whole group at the end. */
interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(command: string, args: string[], cwd: string, env: Record<string, string>): Started {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, NODE_ENV: "development", ...env },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { child, output: () => output, exited };
}

/** dynalite (an in-memory DynamoDB) from the project's node_modules, on a free port. */
async function startDynalite(): Promise<{ endpoint: string; started: Started }> {
  const port = await freePort();
  const started = start(
    join(project, "node_modules/.bin/dynalite"),
    ["--port", String(port), "--host", "127.0.0.1", "--createTableMs", "0"],
    project,
    {},
  );
  await waitFor(`dynalite on port ${port}`, started, () => listening(port), 60_000);
  return { endpoint: `http://127.0.0.1:${port}`, started };
}

function stop(started: Started): Promise<unknown> {
  if (started.child.exitCode === null && started.child.pid !== undefined) {
    try {
      process.kill(-started.child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return started.exited;
}

/** Polls (bounded) until `check` holds; fails with what the process printed. */
async function waitFor(
  what: string,
  started: Started,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    if (started.child.exitCode !== null) {
      throw new Error(`exited (${started.child.exitCode}) before ${what}:\n${started.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`no ${what} within ${timeoutMs} ms:\n${started.output()}`);
}

async function listening(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5_000) });
    return true;
  } catch {
    return false;
  }
}

/** One signed delivery, as Mappa sends it today (conduit's header and event shape). */
async function deliver(port: number, secret: string) {
  const event = createTestEvent("report.completed");
  const body = JSON.stringify(event);
  const response = await fetch(`http://127.0.0.1:${port}/webhooks/mappa`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "conduit-signature": await signPayload({ payload: body, secret }),
    },
    body,
    signal: AbortSignal.timeout(60_000),
  });
  return { event, status: response.status, answer: await response.text() };
}

/** Writes the quick start into its own directory with the tsconfig it runs with. */
function place(quickstart: Quickstart): { dir: string; file: string } {
  const dir = join(project, "quickstarts", quickstart.slug);
  const file =
    quickstart.kind === "next"
      ? "app/webhooks/mappa/route.ts"
      : quickstart.kind === "lambda"
        ? "index.ts"
        : quickstart.kind === "client"
          ? "check.ts"
          : "server.ts";
  mkdirSync(join(dir, file, ".."), { recursive: true });
  writeFileSync(join(dir, file), quickstart.code);
  // Next writes its own tsconfig.json on `next dev`; ours is checked under another name there.
  const tsconfig = quickstart.kind === "next" ? "tsconfig.check.json" : "tsconfig.json";
  writeFileSync(join(dir, tsconfig), quickstart.tsconfig ?? DEFAULT_TSCONFIG);
  return { dir, file };
}

async function typecheck(dir: string, kind: Quickstart["kind"]): Promise<void> {
  const tsconfig = kind === "next" ? "tsconfig.check.json" : "tsconfig.json";
  try {
    await run(join(project, "node_modules/.bin/tsc"), ["-p", tsconfig, "--noEmit"], { cwd: dir });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`tsc failed:\n${stdout ?? ""}${stderr ?? ""}`);
  }
}

// A function URL in front of a Lambda handler module: each HTTP request becomes the event AWS
// documents for function URLs (payload format 2.0), the result is written back as AWS does.
const FRONT_DOOR = `
import { createServer } from "node:http";
import { handler } from "./index.ts";

createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const url = new URL(req.url ?? "/", "http://localhost");
  const event = {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
    requestContext: {
      http: { method: req.method, path: url.pathname, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "" },
      requestId: "quickstart", routeKey: "$default", stage: "$default", timeEpoch: Date.now(),
      accountId: "anonymous", apiId: "quickstart", domainName: "localhost", domainPrefix: "localhost", time: "",
    },
    body: Buffer.concat(chunks).toString("base64"),
    isBase64Encoded: true,
  };
  const context = {
    functionName: "quickstart", functionVersion: "$LATEST", awsRequestId: "quickstart",
    invokedFunctionArn: "arn:aws:lambda:local:0:function:quickstart", memoryLimitInMB: "128",
    logGroupName: "", logStreamName: "", callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => 30000, done() {}, fail() {}, succeed() {},
  };
  const result = await handler(event, context);
  const body = result.isBase64Encoded ? Buffer.from(result.body ?? "", "base64") : (result.body ?? "");
  res.writeHead(result.statusCode, result.headers ?? {}).end(body);
}).listen(Number(process.env.PORT));
`;

/** A database of its own for a quick start that uses Postgres. */
async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `quickstart_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/** A MySQL database of its own for a quick start that uses MySQL. */
async function freshMysqlDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `quickstart_${randomBytes(6).toString("hex")}`;
  const admin = await mysql.createConnection(MYSQL_URL);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(MYSQL_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = await mysql.createConnection(MYSQL_URL);
      await client.query(`DROP DATABASE IF EXISTS ${name}`);
      await client.end();
    },
  };
}

const receivers = all.filter((q) => q.kind !== "client");
const clients = all.filter((q) => q.kind === "client");

describe("README quick starts, installed from packed tarballs", () => {
  it("finds the quick starts", () => {
    expect(receivers.length).toBeGreaterThanOrEqual(10);
  });

  for (const quickstart of receivers) {
    it(`${quickstart.readme}: type-checks strictly, runs, and handles a signed delivery`, async () => {
      const began = Date.now();
      const { dir } = place(quickstart);
      await typecheck(dir, quickstart.kind);
      const secret = `whsec_${randomBytes(12).toString("hex")}`;
      const port = await freePort();
      const usesPostgres = quickstart.imports.includes("pg");
      const database = usesPostgres ? await freshDatabase() : undefined;
      const mysqlDatabase = quickstart.imports.includes("mysql2")
        ? await freshMysqlDatabase()
        : undefined;
      // DynamoDB quick starts get a dynalite of their own (installed by their README's line).
      const dynamo = quickstart.imports.includes("@aws-sdk/client-dynamodb")
        ? await startDynalite()
        : undefined;
      const env: Record<string, string> = {
        MAPPA_WEBHOOK_SECRET: secret,
        PORT: String(port),
        DATABASE_URL: database?.url ?? DATABASE_URL,
        REDIS_URL,
        MYSQL_URL: mysqlDatabase?.url ?? MYSQL_URL,
        ...(dynamo === undefined
          ? {}
          : { DYNAMODB_ENDPOINT: dynamo.endpoint, DYNAMODB_TABLE: `quickstart_${port}` }),
        NEXT_TELEMETRY_DISABLED: "1",
      };
      if (quickstart.kind === "lambda") writeFileSync(join(dir, "front-door.ts"), FRONT_DOOR);
      const bin = (name: string) => join(project, "node_modules/.bin", name);
      const started =
        quickstart.kind === "next"
          ? start(bin("next"), ["dev", "--port", String(port), "--hostname", "127.0.0.1"], dir, env)
          : start(
              bin("tsx"),
              [quickstart.kind === "lambda" ? "front-door.ts" : "server.ts"],
              dir,
              env,
            );
      try {
        await waitFor(`a server on port ${port}`, started, () => listening(port), 180_000);
        const { event, status, answer } = await deliver(port, secret);
        expect({ status, answer }, started.output()).toEqual({
          status: 200,
          answer: JSON.stringify({ received: true }),
        });
        const line = `report ready ${event.data.reportId}`;
        await waitFor(`"${line}" logged`, started, () => started.output().includes(line), 30_000);
        if (usesPostgres && database) {
          const client = new pg.Client({ connectionString: database.url });
          await client.connect();
          const marks = await client.query(
            "SELECT status FROM mappa_webhooks.events WHERE event_id = $1",
            [event.id],
          );
          const reports = await client.query("SELECT id FROM reports");
          await client.end();
          expect(marks.rows).toEqual([{ status: "done" }]);
          expect(reports.rows).toEqual([{ id: event.data.reportId }]);
        }
        if (quickstart.imports.includes("ioredis")) {
          const redis = new Redis(REDIS_URL);
          const key = `mappa-webhooks:{${jobOutcomeKey(event.type, event.data.jobId)}}`;
          const value = await redis.get(key);
          await redis.del(key);
          await redis.quit();
          expect(value, "the event's idempotency key in Redis").toMatch(/^d:/);
        }
      } finally {
        await stop(started);
        await database?.drop();
        await mysqlDatabase?.drop();
        if (dynamo !== undefined) await stop(dynamo.started);
        timings.push(`${quickstart.slug}: ${Date.now() - began} ms`);
      }
    });
  }

  for (const quickstart of clients) {
    it(`${quickstart.readme}: type-checks strictly and delivers to a running receiver`, async () => {
      const began = Date.now();
      const receiver = receivers.find((q) => q.readme === "packages/core/README.md");
      expect(receiver, "the core's quick start, the receiver the client sends to").toBeDefined();
      const { dir } = place(quickstart);
      await typecheck(dir, quickstart.kind);
      const secret = `whsec_${randomBytes(12).toString("hex")}`;
      const port = await freePort();
      const env = { MAPPA_WEBHOOK_SECRET: secret, PORT: String(port) };
      const tsx = join(project, "node_modules/.bin/tsx");
      const server = start(tsx, ["server.ts"], place(receiver as Quickstart).dir, env);
      try {
        await waitFor(`a server on port ${port}`, server, () => listening(port), 180_000);
        const client = start(tsx, ["check.ts"], dir, env);
        const timeout = setTimeout(() => void stop(client), 120_000);
        const code = await client.exited;
        clearTimeout(timeout);
        expect({ code, output: client.output() }).toMatchObject({ code: 0 });
        await waitFor("the receiver's log line", server, () =>
          server.output().includes("report ready "),
        );
      } finally {
        await stop(server);
        timings.push(`${quickstart.slug}: ${Date.now() - began} ms`);
      }
    });
  }
});

// The README's other snippets are excerpts: each is checked as its own module, with a prelude
// declaring what it takes from the reader's code (preludes.ts), against the installed packages.
const excerpts = [
  "README.md",
  ...publishedPackages().map((p) => `${p.dir.slice(root.length + 1)}/README.md`),
]
  .filter((path) => existsSync(join(root, path)))
  .map((path) => ({
    path,
    text: readmeOf(path),
  }))
  .map(({ path, text }) => ({
    path,
    snippets: codeBlocks(text)
      .filter((b) => b.lang === "ts" && b.marker === undefined)
      .map((b) => b.code),
    tsconfig: codeBlocks(text).find((b) => b.marker === "quickstart tsconfig")?.code,
  }))
  .filter((doc) => doc.snippets.length > 0);

describe("README excerpts, against the installed packages", () => {
  for (const doc of excerpts) {
    it(`${doc.path}: each of its ${doc.snippets.length} other TypeScript snippets type-checks`, async () => {
      const dir = join(project, "excerpts", doc.path.replace(/\//g, "_").replace(/\.md$/, ""));
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "prelude.d.ts"), PRELUDES[doc.path] ?? "export {};\n");
      for (const [i, code] of doc.snippets.entries()) {
        writeFileSync(join(dir, `snippet${i + 1}.ts`), `${code}\nexport {};\n`);
      }
      const base = JSON.parse(doc.tsconfig ?? DEFAULT_TSCONFIG) as { compilerOptions: object };
      // NestJS excerpts (in the root README too) need what its README's tsconfig states.
      const nest = doc.snippets.some((code) => code.includes('from "@nestjs/'));
      const decorators = nest ? { experimentalDecorators: true, emitDecoratorMetadata: true } : {};
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: { ...base.compilerOptions, ...decorators, noEmit: true },
        }),
      );
      await typecheck(dir, "server");
    });
  }
});
