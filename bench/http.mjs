// HTTP benchmark: requests per second of our adapter against a hand-written optimal route, a
// bare raw-body route and (Express) the Mappa docs' recipe, in the same framework.
//
// Each server runs in its own process, the load generator (autocannon) in another. All of a
// framework's servers are started together (two processes per variant, used in alternate
// rounds) and measured in interleaved rounds (A, B, C, then B, C, A, ...), each run a short
// bounded autocannon run; per round every variant's req/s is
// divided by the optimal route's and the bare route's of that round, and the result is the
// median of those per-round ratios. Every request carries a valid signature over a 1 KiB event.
import { createEventBody, signBody, WEBHOOK_PATH } from "./lib/fixtures.mjs";
import { procCpuMs, runLoad, startServer } from "./lib/processes.mjs";
import { median, quantile } from "./lib/stats.mjs";

export const HTTP_ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 4);
export const HTTP_SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 3);
export const HTTP_WARMUP_SECONDS = Number(process.env.BENCH_HTTP_WARMUP_SECONDS ?? 1);
export const HTTP_CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 10);
export const HTTP_INSTANCES = Number(process.env.BENCH_HTTP_INSTANCES ?? 2);
export const HTTP_BODY_BYTES = 1024;

export const FRAMEWORKS = {
  express: ["adapter", "optimal", "bare", "recipe"],
  fastify: ["adapter", "optimal", "bare"],
  hono: ["adapter", "optimal", "bare"],
};

export const VARIANT_LABELS = {
  adapter: "**ours** (adapter, idempotency off)",
  optimal: "hand-written optimal route (raw body + node:crypto + JSON.parse)",
  bare: "bare raw-body route (no verification)",
  recipe: "docs recipe: `express.text()` + SDK verifier",
};

/** Checks a server answers a valid delivery 200 and (unless bare) a forged one 401. */
async function checkServer(server) {
  const body = createEventBody(HTTP_BODY_BYTES);
  const post = async (signature) =>
    fetch(`${server.url}${WEBHOOK_PATH}`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "mappa-signature": signature },
    });
  const valid = await post(await signBody(body));
  await valid.arrayBuffer();
  const forged = await post(await signBody(`${body} `));
  await forged.arrayBuffer();
  const forgedExpected = server.variant === "bare" ? 200 : 401;
  if (valid.status !== 200 || forged.status !== forgedExpected) {
    throw new Error(
      `${server.framework}/${server.variant}: valid → ${valid.status}, forged → ${forged.status} (expected 200 and ${forgedExpected})`,
    );
  }
}

async function benchFramework(framework, variants, log) {
  // Each variant runs in HTTP_INSTANCES server processes, used in turn from round to round:
  // how well V8 happens to optimise one process then sways a share of the rounds, not all.
  const instances = [];
  try {
    for (let i = 0; i < HTTP_INSTANCES; i++) {
      const set = [];
      for (const variant of variants) set.push(await startServer(framework, variant));
      instances.push(set);
    }
    const url = (server) => `${server.url}${WEBHOOK_PATH}`;
    for (const server of instances.flat()) {
      await checkServer(server);
      await runLoad(url(server), HTTP_WARMUP_SECONDS, HTTP_CONNECTIONS, HTTP_BODY_BYTES);
    }
    const rounds = [];
    for (let round = 0; round < HTTP_ROUNDS; round++) {
      const runs = {};
      const servers = instances[round % instances.length];
      for (let k = 0; k < servers.length; k++) {
        const server = servers[(round + k) % servers.length];
        const cpuBefore = procCpuMs(server.pid);
        const result = await runLoad(url(server), HTTP_SECONDS, HTTP_CONNECTIONS, HTTP_BODY_BYTES);
        const cpuAfter = procCpuMs(server.pid);
        // The server's own CPU time per request: unlike req/s, it does not depend on how much
        // CPU the load generator and other processes left to the server.
        result.cpuUsPerRequest =
          cpuBefore === undefined ? Number.NaN : ((cpuAfter - cpuBefore) * 1000) / result.total;
        if (result.non2xx > 0 || result.errors > 0) {
          throw new Error(
            `${framework}/${server.variant}: ${result.non2xx} non-2xx answers, ${result.errors} errors under load`,
          );
        }
        runs[server.variant] = result;
      }
      rounds.push(runs);
      log(`http ${framework} round ${round + 1}/${HTTP_ROUNDS}`);
    }
    const summary = (values) => ({
      median: median(values),
      p25: quantile(values, 0.25),
      p75: quantile(values, 0.75),
    });
    const ratio = (variant, baseline) =>
      summary(rounds.map((r) => r[variant].requestsPerSec / r[baseline].requestsPerSec));
    // Requests per CPU-second relative to the baseline's: the CPU view of the same ratio.
    const cpuRatio = (variant, baseline) =>
      summary(rounds.map((r) => r[baseline].cpuUsPerRequest / r[variant].cpuUsPerRequest));
    return {
      framework,
      results: variants.map((variant) => ({
        variant,
        label: VARIANT_LABELS[variant],
        requestsPerSec: median(rounds.map((r) => r[variant].requestsPerSec)),
        latencyP99Ms: median(rounds.map((r) => r[variant].latencyP99Ms)),
        vsOptimal: ratio(variant, "optimal"),
        vsBare: ratio(variant, "bare"),
        cpuUsPerRequest: median(rounds.map((r) => r[variant].cpuUsPerRequest)),
        cpuVsOptimal: cpuRatio(variant, "optimal"),
      })),
    };
  } finally {
    await Promise.all(instances.flat().map((server) => server.close()));
  }
}

/** The whole HTTP benchmark; `log` receives progress lines. */
export async function runHttp(frameworks = Object.keys(FRAMEWORKS), log = () => {}) {
  const out = [];
  for (const framework of frameworks)
    out.push(await benchFramework(framework, FRAMEWORKS[framework], log));
  return {
    rounds: HTTP_ROUNDS,
    instances: HTTP_INSTANCES,
    seconds: HTTP_SECONDS,
    connections: HTTP_CONNECTIONS,
    bodyBytes: HTTP_BODY_BYTES,
    frameworks: out,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const frameworks = process.env.BENCH_HTTP_FRAMEWORKS?.split(",");
  const result = await runHttp(frameworks, (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
