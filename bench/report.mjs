// Turns the results of run.mjs into BENCHMARKS.md: targets first, then the tables of ratios.
import { execFileSync } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { formatInteger, formatRatio } from "./lib/stats.mjs";
import { MEMORY_BODY_BYTES, MEMORY_LIMIT_BYTES } from "./memory.mjs";

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;

/** Target thresholds from the issue. */
export const TARGETS = {
  verifyVsFloor: 1.15,
  constructVsFloorParse: 1.1,
  webVsSdkSpeedup: 2,
  adapterVsOptimal: 0.95,
  rssGrowthBytes: 10 * MiB,
};

function versionOf(name, from = join(BENCH_DIR, "node_modules")) {
  try {
    return JSON.parse(readFileSync(join(from, name, "package.json"), "utf8")).version;
  } catch {
    return "?";
  }
}

/** The versions of everything measured. */
export function versions() {
  const svixDir = realpathSync(join(BENCH_DIR, "node_modules", "svix"));
  return [
    ["node", process.versions.node],
    ["@mappa-webhooks/core", versionOf("@mappa-webhooks/core")],
    ["@mappa-webhooks/express", versionOf("@mappa-webhooks/express")],
    ["@mappa-webhooks/fastify", versionOf("@mappa-webhooks/fastify")],
    ["@mappa-webhooks/hono", versionOf("@mappa-webhooks/hono")],
    ["stripe", versionOf("stripe")],
    ["standardwebhooks", versionOf("standardwebhooks")],
    [
      "svix",
      `${versionOf("svix")} (its standardwebhooks: ${versionOf("standardwebhooks", join(svixDir, ".."))})`,
    ],
    ["express", versionOf("express")],
    ["fastify", versionOf("fastify")],
    ["hono", versionOf("hono")],
    ["@hono/node-server", versionOf("@hono/node-server")],
    ["autocannon", versionOf("autocannon")],
  ];
}

/** The repository's commit (and whether the tree differs from it), when git is at hand. */
export function commitOf() {
  try {
    const run = (...args) => execFileSync("git", args, { cwd: BENCH_DIR, encoding: "utf8" }).trim();
    const dirty = run("status", "--porcelain", "--", "../packages").length > 0;
    return `${run("rev-parse", "--short", "HEAD")}${dirty ? " (packages/ with uncommitted changes)" : ""}`;
  } catch {
    return "unknown";
  }
}

/** CPU, cores, memory and OS of this machine, and its load when the run started. */
export function machine(loadAtStart) {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? "unknown",
    cores: cpus.length,
    memoryGiB: os.totalmem() / 1024 ** 3,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAtStart,
  };
}

const ratioCell = (r) => `${formatRatio(r.median)} [${formatRatio(r.p25)}–${formatRatio(r.p75)}]`;
const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`;
const verdict = (met) => (met ? "**met**" : "**missed**");

function find(micro, size, id) {
  return micro.sizes.find((s) => s.size === size)?.results.find((r) => r.id === id);
}

/** Every target with its measured value and whether it is met. */
export function evaluateTargets({ micro, http, memory }) {
  const rows = [];
  if (micro) {
    const verify = find(micro, 1024, "verifyNode");
    const construct = find(micro, 1024, "constructNode");
    const sdk = find(micro, 1024, "mappaSdk");
    if (verify) {
      rows.push({
        id: "verify",
        target: `\`verifySignature\` (node:crypto) ≤ ${TARGETS.verifyVsFloor}× the floor at 1 KiB`,
        measured: `${formatRatio(verify.vsFloor.median)} the floor`,
        met: verify.vsFloor.median <= TARGETS.verifyVsFloor,
      });
    }
    if (construct) {
      rows.push({
        id: "construct",
        target: `\`constructEvent\` (node:crypto) ≤ ${TARGETS.constructVsFloorParse}× (floor + JSON.parse) at 1 KiB`,
        measured: `${formatRatio(construct.vsFloorParse.median)} (floor + JSON.parse)`,
        met: construct.vsFloorParse.median <= TARGETS.constructVsFloorParse,
      });
    }
    if (sdk) {
      const bySize = micro.sizes.map((s) => {
        const r = s.results.find((x) => x.id === "mappaSdk");
        return `${s.label}: ${formatRatio(r.vsVerifyWeb.median)}`;
      });
      rows.push({
        id: "web",
        target: `Web Crypto path (cached key) ≥ ${TARGETS.webVsSdkSpeedup}× faster than the Mappa SDK pattern at 1 KiB`,
        measured: `${formatRatio(sdk.vsVerifyWeb.median)} faster (${bySize.join(", ")})`,
        met: sdk.vsVerifyWeb.median >= TARGETS.webVsSdkSpeedup,
      });
    }
  }
  if (http) {
    for (const { framework, results } of http.frameworks) {
      const adapter = results.find((r) => r.variant === "adapter");
      rows.push({
        id: `http-${framework}`,
        target: `${framework} adapter ≥ ${TARGETS.adapterVsOptimal}× the hand-written optimal route's req/s`,
        measured: `${formatRatio(adapter.vsOptimal.median)} [${formatRatio(adapter.vsOptimal.p25)}–${formatRatio(adapter.vsOptimal.p75)}] (per CPU-second: ${formatRatio(adapter.cpuVsOptimal.median)})`,
        met: adapter.vsOptimal.median >= TARGETS.adapterVsOptimal,
      });
    }
  }
  if (memory) {
    for (const framework of [...new Set(memory.results.map((r) => r.framework))]) {
      const runs = memory.results.filter((r) => r.framework === framework);
      const met = runs.every((r) => r.status === 413 && r.rssGrowth < TARGETS.rssGrowthBytes);
      rows.push({
        id: `memory-${framework}`,
        target: `${framework}: ${mib(MEMORY_BODY_BYTES)} against a ${mib(MEMORY_LIMIT_BYTES)} limit → 413, RSS growth < 10 MiB`,
        measured: runs
          .map(
            (r) =>
              `${r.transfer}: ${statusCell(r)}, ${mib(r.rssGrowth)} (peak ${mib(r.peakGrowth)})`,
          )
          .join("; "),
        met,
      });
    }
  }
  return rows;
}

function microSection(micro) {
  const lines = [];
  const sizes = micro.sizes;
  lines.push("## Micro: the cost of one verification, relative to the floor", "");
  lines.push(
    "Time per call divided by the floor's time per call **in the same round** (lower is " +
      `better; 1.00× is the floor): the median over ${micro.rounds} interleaved rounds, then the ` +
      `median of ${micro.trials} independent trials; [p25–p75] spans all rounds. The floor is ` +
      '`createHmac("sha256", key).update(prefix).update(body).digest()` + `timingSafeEqual` ' +
      "with the key, the `t.` prefix, the body and the expected digest decoded to bytes before " +
      "the timed region: the least work any verifier must do. Every contender gets the raw body as " +
      "bytes (a `Buffer`, as an HTTP server reads it), except the SDK pattern, which takes the " +
      "decoded string as its API does. Rows marked (verify + parse) also `JSON.parse` the body, " +
      "so compare them with the floor + JSON.parse row.",
    "",
  );
  lines.push(`| contender | ${sizes.map((s) => s.label).join(" | ")} |`);
  lines.push(`|---|${sizes.map(() => "---:").join("|")}|`);
  for (const { id, label } of sizes[0].results) {
    const cells = sizes.map((s) => formatRatio(s.results.find((r) => r.id === id).vsFloor.median));
    lines.push(`| ${label} | ${cells.join(" | ")} |`);
  }
  lines.push("");
  for (const s of sizes) {
    lines.push(`### ${s.label} body`, "");
    lines.push(
      "| contender | × floor [p25–p75] | × (floor + JSON.parse) | × our Web Crypto path | median ops/s |",
    );
    lines.push("|---|---:|---:|---:|---:|");
    for (const r of s.results) {
      lines.push(
        `| ${r.label} | ${ratioCell(r.vsFloor)} | ${formatRatio(r.vsFloorParse.median)} | ${formatRatio(r.vsVerifyWeb.median)} | ${formatInteger(r.opsPerSec)} |`,
      );
    }
    lines.push("");
  }
  return lines;
}

function httpSection(http) {
  const lines = [
    "## HTTP: requests per second against the same framework's hand-written routes",
    "",
  ];
  lines.push(
    `Each server in its own process, autocannon in another; ${http.connections} connections, ` +
      `${http.rounds} interleaved rounds of ${http.seconds} s per variant after a warm-up run, ` +
      `each variant served by ${http.instances ?? 1} processes used in alternate rounds ` +
      "(so one process's luck with the JIT sways only its rounds); " +
      `every request a validly signed ${http.bodyBytes} B event. Ratios are req/s divided by the ` +
      "optimal (or bare) route's req/s in the same round, median over rounds (higher is better). " +
      "The adapter runs with `idempotency: false`: all requests carry the same event, and with " +
      "deduplication on every request after the first would take the cheaper duplicate path. " +
      "Each server was checked first to answer the valid delivery 200 and a forged one 401 " +
      "(the bare route 200). The CPU columns divide the server process's own CPU time " +
      "(/proc/<pid>/stat) by the requests it served: on a machine where the load generator " +
      "and other work compete for the cores, requests per CPU-second is the steadier view of " +
      "the same ratio; the targets are judged on req/s.",
    "",
  );
  for (const { framework, results } of http.frameworks) {
    lines.push(`### ${framework}`, "");
    lines.push(
      "| route | req/s × optimal [p25–p75] | req/s × bare | req per CPU-s × optimal [p25–p75] | median req/s | server CPU per request | p99 latency |",
    );
    lines.push("|---|---:|---:|---:|---:|---:|---:|");
    for (const r of results) {
      lines.push(
        `| ${r.label} | ${ratioCell(r.vsOptimal)} | ${formatRatio(r.vsBare.median)} | ${ratioCell(r.cpuVsOptimal)} | ${formatInteger(r.requestsPerSec)} | ${Number.isFinite(r.cpuUsPerRequest) ? `${r.cpuUsPerRequest.toFixed(0)} µs` : "n/a"} | ${r.latencyP99Ms} ms |`,
      );
    }
    lines.push("");
  }
  return lines;
}

const statusCell = (r) =>
  `${r.status ?? r.outcome}${r.resets > 0 ? ` (after ${r.resets} reset${r.resets > 1 ? "s" : ""} before the answer)` : ""}`;

function memorySection(memory) {
  const lines = ["## Memory: a 100 MiB request against a 1 MiB limit", ""];
  lines.push(
    `Each adapter with \`maxBodyBytes: ${MEMORY_LIMIT_BYTES}\` gets a ${mib(memory.bodyBytes)} body ` +
      "generated on the fly (one 64 KiB chunk written repeatedly), chunked (no length to reject " +
      "up front) and with a declared `Content-Length`. The client stops sending once the server " +
      "answers or closes the connection (what it sent by then is mostly still in the socket " +
      `buffers, not read by the server). RSS is read from ${memory.rssSource} of the server ` +
      "process: growth is after minus before (the server was warmed up with 50 valid requests), " +
      "peak growth the highest value sampled every 5 ms while the request ran minus before. " +
      "A run where the connection was reset before the answer could be read is retried (3 " +
      "attempts at most) and counted in the status column: the server answered and closed " +
      "with request bytes unread, so its kernel reset the connection, and a sender can lose " +
      "the answer the same way.",
    "",
  );
  lines.push(
    "| adapter | transfer | status | sent before the answer | RSS growth | peak RSS growth | time |",
  );
  lines.push("|---|---|---:|---:|---:|---:|---:|");
  for (const r of memory.results) {
    lines.push(
      `| ${r.framework} | ${r.transfer} | ${r.status ?? r.outcome} | ${mib(r.sentBytes)} | ${mib(r.rssGrowth)} | ${mib(r.peakGrowth)} | ${Math.round(r.ms)} ms |`,
    );
  }
  lines.push("");
  return lines;
}

function profileSection(profiles) {
  if (!profiles || profiles.length === 0) return [];
  const lines = ["## Profiles of the missed targets (this run)", ""];
  lines.push(
    "Taken with `node --cpu-prof` on a focused loop (micro) or on the server process under a " +
      "load run (HTTP); the top frames by self time, in percent of all samples.",
    "",
  );
  for (const p of profiles) {
    lines.push(`### ${p.title}`, "");
    lines.push("| self % | frame |", "|---:|---|");
    for (const frame of p.self) lines.push(`| ${frame.percent.toFixed(1)} | \`${frame.frame}\` |`);
    lines.push("");
  }
  return lines;
}

/**
 * The whole BENCHMARKS.md. `analysis` maps a target id prefix to the explanation of a miss;
 * `notes.http` is printed once when any HTTP target is missed.
 */
export function renderReport({
  startedAt,
  seconds,
  machineInfo,
  micro,
  http,
  memory,
  profiles,
  analysis,
  notes,
}) {
  const targets = evaluateTargets({ micro, http, memory });
  const lines = [
    "# Benchmarks",
    "",
    `Generated by \`pnpm bench\` on ${startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC ` +
      `in ${Math.round(seconds)} s. The results are **ratios** measured side by side in one run; ` +
      "absolute ops/s and req/s are given for context and only hold on this machine.",
    "",
    "## Machine and versions",
    "",
    `- CPU: ${machineInfo.cpu}, ${machineInfo.cores} cores; memory ${machineInfo.memoryGiB.toFixed(1)} GiB; ${machineInfo.os}`,
    `- Load average when the run started: ${machineInfo.loadAtStart.map((x) => x.toFixed(2)).join(", ")}` +
      (machineInfo.loadAtStart[0] > 0.5 * machineInfo.cores
        ? " (the machine was busy with other work: the interleaved rounds and same-round ratios are meant to absorb that, absolute numbers are low)"
        : ""),
    `- Commit ${commitOf()}; ${versions()
      .map(([name, version]) => `${name} ${version}`)
      .join(", ")}`,
    "",
    "## Targets",
    "",
    "| target | measured | |",
    "|---|---|---|",
    ...targets.map((t) => `| ${t.target} | ${t.measured} | ${verdict(t.met)} |`),
    "",
  ];
  const missed = targets.filter((t) => !t.met);
  if (missed.length > 0) {
    lines.push("### Gaps and their causes", "");
    for (const t of missed) {
      const text = analysis?.[t.id.replace(/-.*/, "")]?.(t.id) ?? "Not analysed yet.";
      lines.push(`- **${t.target}** (measured ${t.measured}): ${text}`);
    }
    lines.push("");
    if (notes?.http && missed.some((t) => t.id.startsWith("http-"))) lines.push(notes.http, "");
  }
  if (micro) lines.push(...microSection(micro));
  if (http) lines.push(...httpSection(http));
  if (memory) lines.push(...memorySection(memory));
  lines.push(...profileSection(profiles));
  lines.push(
    "## How to reproduce",
    "",
    "```sh",
    "pnpm install",
    "pnpm bench   # builds the packages, runs bench/run.mjs and rewrites BENCHMARKS.md",
    "```",
    "",
    "See bench/README.md for what each part measures and the environment variables that " +
      "shorten or lengthen the runs. Close other work on the machine for stable numbers; the " +
      "ratios are robust to moderate noise, the absolute numbers are not.",
    "",
  );
  return lines.join("\n");
}
