// The Cloudflare variants of the stores benchmark: stores/cloudflare/worker.mjs (the Hono
// adapter, one route per store) bundled as `wrangler deploy` would (`wrangler deploy --dry-run
// --outdir`), served by one workerd through Miniflare on 127.0.0.1, offline
// (CLOUDFLARE_CF_FETCH_ENABLED=false), with the Durable Object and D1 bindings persisted in a
// temporary folder (removed by `close()`). The load goes straight to the Worker's own socket
// (Miniflare's `unsafeDirectSockets`), not through Miniflare's entry Worker, which the bench
// would otherwise measure too. Used by ../stores.mjs; `startWorkerd()` is its one export.
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { SECRET, WEBHOOK_PATH } from "../lib/fixtures.mjs";

const require = createRequire(import.meta.url);
const WORKER_DIR = fileURLToPath(new URL("./cloudflare/", import.meta.url));
const WORKER_NAME = "mappa-webhooks-bench-stores";
const COMPATIBILITY_DATE = "2025-09-01";
const BUNDLE_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 60_000;

/** The bench variant of each route of the Worker. */
export const WORKERD_ROUTES = {
  "workerd-memory": "memory",
  "durable-object": "durable-object",
  d1: "d1",
};

/** Bundles the Worker into `outdir` as `wrangler deploy` would; resolves the bundle's text. */
async function bundle(outdir) {
  await promisify(execFile)(
    process.execPath,
    [require.resolve("wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir],
    {
      cwd: WORKER_DIR,
      env: {
        ...process.env,
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
        WRANGLER_SEND_METRICS: "false",
        CI: "true",
      },
      timeout: BUNDLE_TIMEOUT_MS,
    },
  );
  // The bundle alone: its source map points outside the output folder, which workerd refuses.
  return readFileSync(join(outdir, "worker.js"), "utf8").replace(
    /\n\/\/# sourceMappingURL=.*$/m,
    "",
  );
}

/** Miniflare's workerd: the child process of this one named `workerd` (Linux, /proc). */
function workerdPid() {
  for (const task of readdirSync("/proc/self/task")) {
    const children = readFileSync(`/proc/self/task/${task}/children`, "utf8").trim().split(/\s+/);
    for (const pid of children.filter(Boolean)) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd") return Number(pid);
      } catch {
        // That child has exited meanwhile.
      }
    }
  }
  return undefined;
}

/** The version of `name`, resolved from `from` (workerd is miniflare's dependency). */
const versionOf = (name, from = require) => {
  try {
    return from(`${name}/package.json`).version;
  } catch {
    return "?";
  }
};

/**
 * Bundles the Worker and starts it on workerd: resolves `{ pid, service, urlOf(variant),
 * stats(variant), close() }`. `pid` is workerd's (the Worker, the Durable Object and D1 all run
 * in it), `stats(variant)` that route's `{ handled, calls, steps }` so far (see cloudflare/worker.mjs).
 *
 * @example
 * ```js
 * const workerd = await startWorkerd();
 * try {
 *   console.log(workerd.urlOf("durable-object"), await workerd.stats("durable-object"));
 * } finally {
 *   await workerd.close();
 * }
 * ```
 */
export async function startWorkerd({ persist = true } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "mappa-bench-workerd-"));
  let mf;
  try {
    const script = await bundle(join(dir, "bundle"));
    const { Miniflare } = await import("miniflare");
    // Miniflare's own temporary folder (made in the constructor, from os.tmpdir()) inside ours
    // too, so `close()` removes all of it even when Miniflare's own removal loses a race.
    const tmp = process.env.TMPDIR;
    process.env.TMPDIR = dir;
    try {
      mf = new Miniflare({
        host: "127.0.0.1",
        port: 0,
        // Offline: the fallback `request.cf`, never a fetch of Cloudflare's.
        cf: false,
        // `persist: false` (a diagnostic): Miniflare's in-memory storage instead of the folder.
        ...(persist ? { durableObjectsPersist: join(dir, "do"), d1Persist: join(dir, "d1") } : {}),
        workers: [
          {
            name: WORKER_NAME,
            modules: true,
            script,
            compatibilityDate: COMPATIBILITY_DATE,
            bindings: { SECRET },
            durableObjects: {
              MAPPA_IDEMPOTENCY: { className: "MappaIdempotencyObject", useSQLite: true },
            },
            d1Databases: { DB: "mappa-webhooks-bench" },
            unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
          },
        ],
      });
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmp;
    }
    let timer;
    await Promise.race([
      mf.ready,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`workerd did not start within ${START_TIMEOUT_MS} ms`)),
          START_TIMEOUT_MS,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const origin = (await mf.unsafeGetDirectURL(WORKER_NAME)).origin;
    const pid = workerdPid();
    const closeOnce = mf;
    let closed;
    return {
      pid,
      service: `workerd ${versionOf("workerd", createRequire(require.resolve("miniflare")))} (Miniflare ${versionOf("miniflare")}, wrangler ${versionOf("wrangler")}'s bundle), offline, one Worker: the Durable Object (SQLite-backed) and D1 in the same workerd process, persisted to a temporary folder`,
      urlOf: (variant) => `${origin}/${WORKERD_ROUTES[variant]}${WEBHOOK_PATH}`,
      stats: async (variant) => {
        const response = await fetch(`${origin}/__bench/stats`, {
          signal: AbortSignal.timeout(10_000),
        });
        if (!response.ok) throw new Error(`workerd stats answered ${response.status}`);
        return (await response.json())[WORKERD_ROUTES[variant]];
      },
      close: () => {
        closed ??= closeOnce
          .dispose()
          .finally(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
        return closed;
      },
    };
  } catch (error) {
    await mf?.dispose().catch(() => {});
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    throw error;
  }
}
