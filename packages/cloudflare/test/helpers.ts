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

const require = createRequire(import.meta.url);
const workerDir = fileURLToPath(new URL("./worker/", import.meta.url));
export const SECRET = "whsec_cloudflare_test";

export interface RunningWorker {
  mf: Miniflare;
  url: string;
  bundle: string;
  stop(): Promise<void>;
}

export async function startWorker(
  options: { dir?: string; bindings?: Record<string, string> } = {},
): Promise<RunningWorker> {
  const dir = options.dir ?? workerDir;
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
    const bundle = readFileSync(join(outdir, "worker.js"), "utf8");
    const mf = new Miniflare({
      modules: true,
      // The bundle alone: its source map points outside the output folder, which workerd refuses.
      script: bundle.replace(/\n\/\/# sourceMappingURL=.*$/m, ""),
      compatibilityDate: "2025-09-01",
      durableObjects: {
        MAPPA_IDEMPOTENCY: { className: "MappaIdempotencyObject", useSQLite: true },
      },
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
        rmSync(outdir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(outdir, { recursive: true, force: true });
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
