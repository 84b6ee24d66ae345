// Instrumentation benchmark: receiver req/s with instrumentation off, on without an OpenTelemetry
// SDK (`openTelemetry()` over the API's no-ops), and on with the SDK recording every span and
// metric (in-memory exporter), side by side.
//
//   node instrumentation.mjs           JSON on stdout, a markdown table on stderr
//
// The method is the HTTP benchmark's (http.mjs): each variant in two server processes used in
// alternate rounds, rounds interleaved with the first variant rotating, a bounded autocannon
// run each, and per round every variant's req/s divided by `off`'s of the same round; the
// result is the median of those ratios. Target: `nosdk` ≥ 0.97× `off` (within noise).
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createEventBody, signBody, WEBHOOK_PATH } from "./lib/fixtures.mjs";
import { procCpuMs, runLoad } from "./lib/processes.mjs";
import { median, quantile } from "./lib/stats.mjs";

const SERVER = fileURLToPath(new URL("./instrumentation/server.mjs", import.meta.url));
const ROUNDS = Number(process.env.BENCH_INSTR_ROUNDS ?? 8);
const SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 3);
const WARMUP_SECONDS = Number(process.env.BENCH_HTTP_WARMUP_SECONDS ?? 1);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 10);
const INSTANCES = 2;
const BODY_BYTES = 1024;
const FRAMEWORKS = (process.env.BENCH_INSTR_FRAMEWORKS ?? "node,express").split(",");
const VARIANTS = ["off", "nosdk", "sdk"];
// With BENCH_BEFORE_CORE (a path to another core build's dist/node/index.js), the node:http
// receiver also runs on that build: the before/after ratio of the receiver itself.
const variantsFor = (framework) =>
  framework === "node" && process.env.BENCH_BEFORE_CORE ? ["before", ...VARIANTS] : VARIANTS;
const START_TIMEOUT_MS = 20_000;

function start(framework, variant) {
  const child = fork(SERVER, [framework, variant], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${framework}/${variant} did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${framework}/${variant} exited with ${code} before listening`));
    });
    child.on("message", (message) => {
      if (message?.type !== "ready") return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      resolve({
        variant,
        pid: child.pid,
        url: `http://127.0.0.1:${message.port}${WEBHOOK_PATH}`,
        close: () =>
          new Promise((done) => {
            if (child.exitCode !== null) return done();
            const killer = setTimeout(() => child.kill("SIGKILL"), 3000);
            child.once("exit", () => {
              clearTimeout(killer);
              done();
            });
            child.disconnect();
          }),
      });
    });
  });
}

/** A valid delivery answers 200 and a forged one 401 on every server before it is measured. */
async function check(server) {
  const body = createEventBody(BODY_BYTES);
  for (const [signature, expected] of [
    [await signBody(body), 200],
    [await signBody(`${body} `), 401],
  ]) {
    const response = await fetch(server.url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "mappa-signature": signature },
    });
    await response.arrayBuffer();
    if (response.status !== expected) {
      throw new Error(`${server.variant}: answered ${response.status}, expected ${expected}`);
    }
  }
}

async function benchFramework(framework, log) {
  const instances = [];
  try {
    for (let i = 0; i < INSTANCES; i++) {
      const set = [];
      for (const variant of variantsFor(framework)) set.push(await start(framework, variant));
      instances.push(set);
    }
    for (const server of instances.flat()) {
      await check(server);
      await runLoad(server.url, WARMUP_SECONDS, CONNECTIONS, BODY_BYTES);
    }
    const rounds = [];
    for (let round = 0; round < ROUNDS; round++) {
      const servers = instances[round % INSTANCES];
      const runs = {};
      for (let k = 0; k < servers.length; k++) {
        const server = servers[(round + k) % servers.length];
        const cpuBefore = procCpuMs(server.pid);
        const result = await runLoad(server.url, SECONDS, CONNECTIONS, BODY_BYTES);
        // The server's own CPU time per request: unlike req/s, it does not depend on how much
        // CPU other processes left to the server.
        const cpuUs = ((procCpuMs(server.pid) - cpuBefore) * 1000) / result.total;
        if (result.non2xx > 0 || result.errors > 0) {
          throw new Error(
            `${framework}/${server.variant}: ${result.non2xx} non-2xx, ${result.errors} errors`,
          );
        }
        runs[server.variant] = { rps: result.requestsPerSec, cpuUs };
      }
      rounds.push(runs);
      log(`instrumentation ${framework} round ${round + 1}/${ROUNDS}`);
    }
    return {
      framework,
      results: variantsFor(framework).map((variant) => {
        const ratios = rounds.map((r) => r[variant].rps / r.off.rps);
        // Requests per CPU-second relative to off's: the CPU view of the same ratio.
        const cpuRatios = rounds.map((r) => r.off.cpuUs / r[variant].cpuUs);
        return {
          variant,
          requestsPerSec: median(rounds.map((r) => r[variant].rps)),
          cpuUsPerRequest: median(rounds.map((r) => r[variant].cpuUs)),
          cpuVsOff: {
            median: median(cpuRatios),
            p25: quantile(cpuRatios, 0.25),
            p75: quantile(cpuRatios, 0.75),
          },
          vsOff: {
            median: median(ratios),
            p25: quantile(ratios, 0.25),
            p75: quantile(ratios, 0.75),
          },
        };
      }),
    };
  } finally {
    await Promise.all(instances.flat().map((server) => server.close()));
  }
}

const LABELS = {
  before: "instrumentation off, core before the observability work",
  off: "instrumentation off",
  nosdk: "`openTelemetry()`, no SDK registered",
  sdk: "`openTelemetry()`, SDK with in-memory exporter and metric reader",
};

/** The whole benchmark; `log` receives progress lines. */
export async function runInstrumentation(log = () => {}) {
  const frameworks = [];
  for (const framework of FRAMEWORKS) frameworks.push(await benchFramework(framework, log));
  return {
    rounds: ROUNDS,
    seconds: SECONDS,
    connections: CONNECTIONS,
    bodyBytes: BODY_BYTES,
    frameworks,
  };
}

/** A markdown table of a result, with the no-SDK target. */
export function renderInstrumentation(result) {
  const lines = [
    "| receiver | variant | req/s (median) | req/s vs off: median [p25–p75] | CPU µs/req | per CPU-second vs off |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const { framework, results } of result.frameworks) {
    for (const r of results) {
      const { median: m, p25, p75 } = r.vsOff;
      lines.push(
        `| ${framework === "node" ? "core on node:http" : "Express adapter"} | ${LABELS[r.variant]} | ${Math.round(r.requestsPerSec)} | ${m.toFixed(3)}× [${p25.toFixed(3)}–${p75.toFixed(3)}] | ${r.cpuUsPerRequest.toFixed(1)} | ${r.cpuVsOff.median.toFixed(3)}× [${r.cpuVsOff.p25.toFixed(3)}–${r.cpuVsOff.p75.toFixed(3)}] |`,
      );
    }
  }
  for (const { framework, results } of result.frameworks) {
    const nosdk = results.find((r) => r.variant === "nosdk");
    const met = nosdk.vsOff.median >= 0.97 ? "met" : "missed";
    lines.push(
      "",
      `${framework}: no SDK ${nosdk.vsOff.median.toFixed(3)}× off in req/s, ${nosdk.cpuVsOff.median.toFixed(3)}× per CPU-second; target ≥ 0.97× (req/s): ${met}`,
    );
  }
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runInstrumentation((line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.stderr.write(`${renderInstrumentation(result)}\n`);
}
