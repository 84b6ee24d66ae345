// `pnpm bench`: runs the micro, HTTP and memory benchmarks in one go, profiles the targets it
// missed, and writes BENCHMARKS.md at the repository root (and the raw numbers to
// bench/results.json). BENCH_ONLY=micro,http,memory runs a subset; see README.md for the
// other knobs.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { ANALYSIS, PIPELINE_NOTE } from "./analysis.mjs";
import { runHttp } from "./http.mjs";
import { runMemory } from "./memory.mjs";
import { runMicro } from "./micro.mjs";
import { profileMicro, profileServer } from "./profile/profiles.mjs";
import { evaluateTargets, machine, renderReport } from "./report.mjs";

const REPORT = fileURLToPath(new URL("../BENCHMARKS.md", import.meta.url));
const RESULTS = fileURLToPath(new URL("./results.json", import.meta.url));
const only = new Set((process.env.BENCH_ONLY ?? "micro,http,memory,profile").split(","));

const startedAt = new Date();
const started = performance.now();
const loadAtStart = os.loadavg();
const log = (line) =>
  process.stdout.write(
    `[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`,
  );

const micro = only.has("micro") ? await runMicro(undefined, log) : undefined;
const http = only.has("http") ? await runHttp(undefined, log) : undefined;
const memory = only.has("memory") ? await runMemory(undefined, log) : undefined;

// Profiles for what was missed, so BENCHMARKS.md shows where the time goes in this run.
const profiles = [];
if (only.has("profile")) {
  const missed = evaluateTargets({ micro, http, memory }).filter((t) => !t.met);
  for (const { id } of missed) {
    if (id === "verify") {
      profiles.push({
        title: "`verifySignature` (node:crypto), 1 KiB",
        ...(await profileMicro("verifyNode")),
      });
      profiles.push({
        title: "the floor, 1 KiB (for comparison)",
        ...(await profileMicro("floor")),
      });
    } else if (id === "construct") {
      profiles.push({
        title: "`constructEvent` (node:crypto), 1 KiB",
        ...(await profileMicro("constructNode")),
      });
    } else if (id === "web") {
      profiles.push({
        title: "`verifySignature` (Web Crypto), 1 KiB",
        ...(await profileMicro("verifyWeb")),
      });
    } else if (id.startsWith("http-")) {
      const framework = id.slice("http-".length);
      profiles.push({
        title: `${framework} adapter server under load`,
        ...(await profileServer(framework)),
      });
      profiles.push({
        title: `${framework} optimal route server under load (for comparison)`,
        ...(await profileServer(framework, "optimal")),
      });
    }
    log(`profiled ${id}`);
  }
}

const seconds = (performance.now() - started) / 1000;
const machineInfo = machine(loadAtStart);
writeFileSync(
  RESULTS,
  `${JSON.stringify({ startedAt, seconds, machine: machineInfo, micro, http, memory, profiles }, null, 2)}\n`,
);
// The Postgres section is measured by `node postgres.mjs` on its own (it needs PostgreSQL and
// minutes of draining); a run of the rest keeps it as it was.
const POSTGRES_HEADING = "\n## Postgres:";
const previous = existsSync(REPORT) ? readFileSync(REPORT, "utf8") : "";
const postgresSection = previous.includes(POSTGRES_HEADING)
  ? previous.slice(previous.indexOf(POSTGRES_HEADING))
  : "";
writeFileSync(
  REPORT,
  `${renderReport({
    startedAt,
    seconds,
    machineInfo,
    micro,
    http,
    memory,
    profiles,
    analysis: ANALYSIS,
    notes: { http: PIPELINE_NOTE },
  }).trimEnd()}\n${postgresSection}`,
);
for (const t of evaluateTargets({ micro, http, memory })) {
  log(`${t.met ? "met   " : "MISSED"} ${t.target}: ${t.measured}`);
}
log(`wrote ${REPORT}`);
