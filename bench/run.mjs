// `pnpm bench`: runs the micro, HTTP and memory benchmarks, profiles the targets it missed,
// then the durable paths at quick settings (every store over HTTP, the Postgres inbox, its
// draining, the emulator), and writes BENCHMARKS.md at the repository root (and the raw numbers
// to bench/results.json). BENCH_ONLY=micro,http,memory,profile,stores,postgres,drain,emulator
// runs a subset; see README.md for the other knobs.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { ANALYSIS, PIPELINE_NOTE } from "./analysis.mjs";
import { renderDrain, runDrain } from "./drain.mjs";
import { renderEmulator, runEmulatorBench } from "./emulator.mjs";
import { runHttp } from "./http.mjs";
import { runMemory } from "./memory.mjs";
import { runMicro } from "./micro.mjs";
import { renderPostgres, runPostgres } from "./postgres.mjs";
import { profileMicro, profileServer } from "./profile/profiles.mjs";
import { evaluateTargets, machine, renderReport } from "./report.mjs";
import { renderStores, runStores } from "./stores.mjs";

const REPORT = fileURLToPath(new URL("../BENCHMARKS.md", import.meta.url));
const RESULTS = fileURLToPath(new URL("./results.json", import.meta.url));
const only = new Set(
  (process.env.BENCH_ONLY ?? "micro,http,memory,profile,stores,postgres,drain,emulator").split(","),
);

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

// The durable paths at quick settings, so one `pnpm bench` covers every store and stays
// within minutes; each file's own full run (see README.md) is what the recorded sections below
// the generated part of BENCHMARKS.md were measured with.
const durable = [];
if (only.has("stores")) {
  // Four rounds at the headline (10 connections), where the Redis target is judged.
  const result = await runStores(log, { instances: 1, rounds: 4, curveRounds: 1 });
  durable.push({ id: "stores", result, markdown: renderStores(result) });
}
if (only.has("postgres")) {
  const result = await runPostgres(log, { quick: true });
  durable.push({
    id: "postgres",
    result,
    markdown: `## Postgres: inbox receiving with group commit, and draining\n\n${renderPostgres(result)}`,
  });
}
if (only.has("drain")) {
  const result = await runDrain(log, { rounds: 1 });
  durable.push({ id: "drain", result, markdown: renderDrain(result) });
}
if (only.has("emulator")) {
  const result = await runEmulatorBench(log);
  durable.push({
    id: "emulator",
    result,
    markdown: `## Emulator: webhooks delivered against bare signed POSTs\n\n${renderEmulator(result)}`,
  });
}

const seconds = (performance.now() - started) / 1000;
const machineInfo = machine(loadAtStart);
writeFileSync(
  RESULTS,
  `${JSON.stringify(
    {
      startedAt,
      seconds,
      machine: machineInfo,
      micro,
      http,
      memory,
      profiles,
      ...Object.fromEntries(durable.map(({ id, result }) => [id, result])),
    },
    null,
    2,
  )}\n`,
);

/** A markdown text's `## ` sections: the text before the first, then one string per section. */
const sectionsOf = (text) => text.split(/\n(?=## )/);
const headingOf = (section) => section.split("\n", 1)[0].trim();

// The generated part: the report, then the durable paths of this run, their headings demoted
// under one heading of their own. Everything else already in BENCHMARKS.md (the recorded full
// runs and their analyses) is kept below it, in its order.
const DURABLE_HEADING = "## Durable paths in this run (`pnpm bench`, quick settings)";
const report = renderReport({
  startedAt,
  seconds,
  machineInfo,
  micro,
  http,
  memory,
  profiles,
  analysis: ANALYSIS,
  notes: { http: PIPELINE_NOTE },
}).trimEnd();
const previous = existsSync(REPORT) ? readFileSync(REPORT, "utf8") : "";
// A run without the durable parts keeps the previous run's.
const previousDurable = sectionsOf(previous).find(
  (section) => headingOf(section) === DURABLE_HEADING,
);
const durablePart =
  durable.length > 0
    ? `\n\n${DURABLE_HEADING}\n\n${durable
        .map(({ markdown }) => markdown.trimEnd().replace(/^(#{2,}) /gm, "$1# "))
        .join("\n\n")}`
    : previousDurable === undefined
      ? ""
      : `\n\n${previousDurable.trimEnd()}`;
const generated = new Set(sectionsOf(report).slice(1).map(headingOf));
generated.add(DURABLE_HEADING);
// The recorded sections start at the first Postgres one; what is above it is the previous run's
// report, replaced as a whole.
const RECORDED_FROM = "\n## Postgres:";
const recorded = previous.includes(RECORDED_FROM)
  ? previous.slice(previous.indexOf(RECORDED_FROM))
  : "";
const kept = sectionsOf(recorded)
  .slice(1)
  .filter((section) => !generated.has(headingOf(section)))
  .map((section) => section.trimEnd());
writeFileSync(REPORT, `${[`${report}${durablePart}`, ...kept].join("\n\n")}\n`);
for (const t of evaluateTargets({ micro, http, memory })) {
  log(`${t.met ? "met   " : "MISSED"} ${t.target}: ${t.measured}`);
}
log(`wrote ${REPORT}`);
