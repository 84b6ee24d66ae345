// Profiles an adapter's server and the hand-written optimal route's server of the same
// framework under the same fixed request count, then prints the frame-by-frame difference per
// request (profile/diff.mjs):
//   node profile/adapter-vs-optimal.mjs [framework] [outDir]
// Knobs: PROFILE_REQUESTS (per variant and round, default 20000), PROFILE_WARMUP (requests
// before the first profile, default 5000), PROFILE_ROUNDS (default 2; the variants' order
// alternates), PROFILE_CONNECTIONS (default 10), PROFILE_INTERVAL_US (sampling, default 250),
// PROFILE_CANDIDATE (a module preloaded with `--import` into a third, "candidate" adapter
// server, e.g. a loader hook that swaps in a patched package to size a fix before making it).
import { execFile, fork } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WEBHOOK_PATH } from "../lib/fixtures.mjs";
import { procCpuMs } from "../lib/processes.mjs";
import { diffRuns, loadRun } from "./diff.mjs";

const SERVER = fileURLToPath(new URL("./profiled-server.mjs", import.meta.url));
const LOAD = fileURLToPath(new URL("./load-count.mjs", import.meta.url));
const REQUESTS = Number(process.env.PROFILE_REQUESTS ?? 20_000);
const WARMUP = Number(process.env.PROFILE_WARMUP ?? 5_000);
const ROUNDS = Number(process.env.PROFILE_ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 10);
const INTERVAL_US = Number(process.env.PROFILE_INTERVAL_US ?? 250);
const BODY_BYTES = 1024;

const [framework = "express", outArg = ".profiles"] = process.argv.slice(2);
const outDir = resolve(outArg);
mkdirSync(outDir, { recursive: true });

const CANDIDATE = process.env.PROFILE_CANDIDATE;

function start(label) {
  const variant = label === "candidate" ? "adapter" : label;
  const execArgv = label === "candidate" ? [`--import=${resolve(CANDIDATE)}`] : [];
  const child = fork(SERVER, [framework, variant], {
    execArgv,
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const reply = (type) =>
    new Promise((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`${variant}: no ${type} within 60 s`)), 60_000);
      child.on("message", function on(message) {
        if (message?.type !== type) return;
        clearTimeout(timer);
        child.off("message", on);
        done(message);
      });
    });
  return reply("ready").then(({ port }) => ({
    variant: label,
    pid: child.pid,
    url: `http://127.0.0.1:${port}${WEBHOOK_PATH}`,
    request: (message, type) => {
      const answer = reply(type);
      child.send(message);
      return answer;
    },
    close: () =>
      new Promise((done) => {
        const killer = setTimeout(() => child.kill("SIGKILL"), 3000);
        child.once("exit", () => {
          clearTimeout(killer);
          done();
        });
        child.disconnect();
      }),
  }));
}

function load(url, requests) {
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      [LOAD, url, String(requests), String(CONNECTIONS), String(BODY_BYTES)],
      { timeout: 660_000, maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) return fail(new Error(`load run failed: ${error.message}\n${stderr}`));
        const result = JSON.parse(stdout.trim().split("\n").pop());
        if (result.non2xx > 0 || result.errors > 0) {
          return fail(new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`));
        }
        done(result);
      },
    );
  });
}

const variants =
  CANDIDATE === undefined ? ["adapter", "optimal"] : ["adapter", "candidate", "optimal"];
const servers = [];
try {
  for (const variant of variants) servers.push(await start(variant));
  for (const server of servers) await load(server.url, WARMUP);
  const runs = Object.fromEntries(
    variants.map((v) => [v, { label: v, profiles: [], requests: 0, cpuMs: 0, rps: [] }]),
  );
  for (let round = 0; round < ROUNDS; round++) {
    // Rotated each round, so no variant always runs first or right after the same one.
    const order = servers.map((_, k) => servers[(round + k) % servers.length]);
    if (round % 2 === 1) order.reverse();
    for (const server of order) {
      const path = join(outDir, `${framework}-${server.variant}-${round + 1}.cpuprofile`);
      await server.request({ type: "profile-start", intervalUs: INTERVAL_US }, "profile-started");
      const before = procCpuMs(server.pid);
      const result = await load(server.url, REQUESTS);
      const after = procCpuMs(server.pid);
      await server.request({ type: "profile-stop", path }, "profile-written");
      const run = runs[server.variant];
      run.profiles.push(path);
      run.requests += result.total;
      run.cpuMs += after - before;
      run.rps.push(result.requestsPerSec);
      process.stderr.write(
        `${framework}/${server.variant} round ${round + 1}: ${result.total} requests, ` +
          `${Math.round(result.requestsPerSec)} req/s, ${(((after - before) * 1000) / result.total).toFixed(1)} µs CPU/req\n`,
      );
    }
  }
  for (const variant of variants) {
    writeFileSync(join(outDir, `${framework}-${variant}.json`), JSON.stringify(runs[variant]));
  }
  const optimal = loadRun(runs.optimal);
  process.stdout.write(`${diffRuns(loadRun(runs.adapter), optimal)}\n`);
  if (CANDIDATE !== undefined) {
    process.stdout.write(`${diffRuns(loadRun(runs.candidate), loadRun(runs.adapter))}\n`);
  }
} finally {
  await Promise.all(servers.map((server) => server.close()));
}
