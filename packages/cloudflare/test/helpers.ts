// Bundles test/worker with wrangler's own build (as a user's `wrangler deploy` would) and serves
// the bundle from Miniflare on 127.0.0.1, offline.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { signPayload } from "@mappa-webhooks/core";
import { Miniflare } from "miniflare";
import type { D1DatabaseLike, D1StatementLike } from "../src/index.js";

const require = createRequire(import.meta.url);
const workerDir = fileURLToPath(new URL("./worker/", import.meta.url));
export const SECRET = "whsec_cloudflare_test";

export interface RunningWorker {
  mf: Miniflare;
  url: string;
  bundle: string;
  stop(): Promise<void>;
}

/** Bundles the Worker in `dir` as `wrangler deploy` would; `remove()` deletes the output. */
export async function bundleWorker(dir: string): Promise<{
  path: string;
  bundle: string;
  remove(): void;
}> {
  const outdir = mkdtempSync(join(tmpdir(), "mappa-cloudflare-worker-"));
  try {
    const wrangler = require.resolve("wrangler/bin/wrangler.js");
    await promisify(execFile)(
      process.execPath,
      [wrangler, "deploy", "--dry-run", "--outdir", outdir],
      {
        cwd: dir,
        env: {
          ...process.env,
          CLOUDFLARE_CF_FETCH_ENABLED: "false",
          WRANGLER_SEND_METRICS: "false",
          CI: "true",
        },
        timeout: 120_000,
      },
    );
    const path = join(outdir, "worker.js");
    return {
      path,
      bundle: readFileSync(path, "utf8"),
      remove: () => rmSync(outdir, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(outdir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Bundles the Worker in `dir` (default test/worker) and serves it from Miniflare, with the
 * Durable Object binding (unless `objects: false`, for a Worker without the class) and a D1
 * database bound as `DB`.
 */
export async function startWorker(
  options: { dir?: string; bindings?: Record<string, string>; objects?: boolean } = {},
): Promise<RunningWorker> {
  const built = await bundleWorker(options.dir ?? workerDir);
  try {
    const { bundle } = built;
    const mf = new Miniflare({
      modules: true,
      // The bundle alone: its source map points outside the output folder, which workerd refuses.
      script: bundle.replace(/\n\/\/# sourceMappingURL=.*$/m, ""),
      compatibilityDate: "2025-09-01",
      ...(options.objects === false
        ? {}
        : {
            durableObjects: {
              MAPPA_IDEMPOTENCY: { className: "MappaIdempotencyObject", useSQLite: true },
            },
          }),
      d1Databases: { DB: "mappa-webhooks-test" },
      ...(options.bindings === undefined ? {} : { bindings: options.bindings }),
      host: "127.0.0.1",
      port: 0,
    });
    const url = await mf.ready.catch(async (error: unknown) => {
      await mf.dispose();
      throw error;
    });
    return {
      mf,
      url: url.origin,
      bundle,
      stop: async () => {
        await mf.dispose();
        built.remove();
      },
    };
  } catch (error) {
    built.remove();
    throw error;
  }
}

let sequence = 0;

/** A report.completed body with its own id and job (so each is its own event). */
export function reportCompleted(reportId: string, id = `evt_cf_${++sequence}_${Date.now()}`) {
  return JSON.stringify({
    id,
    type: "report.completed",
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: `job_${reportId}`, reportId, status: "completed" },
  });
}

export async function signedHeaders(body: string): Promise<Record<string, string>> {
  return {
    "content-type": "application/json",
    "mappa-signature": await signPayload({ payload: body, secret: SECRET }),
  };
}

/**
 * A D1 database of the test Worker, seen from Node: every `all()`, `run()` and `batch()` is
 * one POST to the Worker's `/d1`, which runs it on `env.DB` (a batch as one `batch()`).
 */
export function d1Over(origin: string): D1DatabaseLike {
  const send = async (statements: { sql: string; params: unknown[] }[], batch: boolean) => {
    const res = await fetch(`${origin}/d1`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ statements, batch }),
    });
    const answer = (await res.json()) as { results?: { results: unknown[] }[]; error?: string };
    if (answer.results === undefined) throw new Error(answer.error ?? `HTTP ${res.status}`);
    return answer.results;
  };
  const statement = (
    sql: string,
    params: unknown[] = [],
  ): D1StatementLike & { sent: { sql: string; params: unknown[] } } => ({
    sent: { sql, params },
    bind: (...values) => statement(sql, values),
    all: async <T>() => (await send([{ sql, params }], false))[0] as { results: T[] },
    run: async () => (await send([{ sql, params }], false))[0],
  });
  return {
    prepare: (sql) => statement(sql),
    batch: async <T>(statements: D1StatementLike[]) =>
      (await send(
        statements.map((s) => (s as ReturnType<typeof statement>).sent),
        true,
      )) as { results: T[] }[],
  };
}
