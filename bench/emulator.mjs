// `node emulator.mjs`: the emulator's throughput and its overhead per webhook delivery.
//
// - jobs/s: report jobs created over HTTP (50 in flight), upload first;
// - deliveries/s: N finished jobs' webhooks sent at once by advance() on the manual clock;
// - overhead per delivery: the emulator's time per delivery minus a bare signed POST's (the core's
//   signPayload + fetch, the same N at once, to the same receiver), in interleaved rounds.
// The receiver is its own process and verifies nothing. JSON on stdout, a table on stderr.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { signPayload } from "@mappa-webhooks/core";
import { startMappaEmulator } from "@mappa-webhooks/emulator";
import { SECRET } from "./lib/fixtures.mjs";
import { median } from "./lib/stats.mjs";

const N = Number(process.env.BENCH_EMULATOR_JOBS ?? 1000);
const ROUNDS = Number(process.env.BENCH_EMULATOR_ROUNDS ?? 5);
const IN_FLIGHT = 50;

function startReceiver() {
  const child = fork(fileURLToPath(new URL("./emulator/receiver.mjs", import.meta.url)), [], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the receiver did not start in 20 s")), 20_000);
    child.once("message", (message) => {
      clearTimeout(timer);
      resolve({
        url: `http://127.0.0.1:${message.port}/webhooks/mappa`,
        count: () =>
          new Promise((done) => {
            child.once("message", (m) => done(m.count));
            child.send({ type: "count" });
          }),
        close: () => child.kill(),
      });
    });
  });
}

async function pool(count, limit, task) {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

async function emulatorRound(receiverUrl) {
  const emulator = await startMappaEmulator({
    clock: "manual",
    secret: SECRET,
    maxJobs: N,
    maxDeliveries: N,
  });
  const headers = { "Mappa-Api-Key": "bench" };
  const form = new FormData();
  form.append("file", new Blob([new Uint8Array(1024)]), "call");
  form.append("label", "call");
  const { mediaId } = await (
    await fetch(`${emulator.url}/v1/files`, { method: "POST", body: form, headers })
  ).json();
  const body = JSON.stringify({
    media: { mediaId },
    output: { template: "general_report" },
    target: { strategy: "dominant", on_miss: "error" },
    webhook: { url: receiverUrl },
  });
  const createStarted = performance.now();
  await pool(N, IN_FLIGHT, async (i) => {
    const response = await fetch(`${emulator.url}/v1/reports/jobs`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", "idempotency-key": `bench-${i}` },
      body,
    });
    if (response.status !== 202) throw new Error(`create answered ${response.status}`);
    await response.arrayBuffer();
  });
  const createMs = performance.now() - createStarted;
  // Every job to just before its end, then the one step that ends them all and sends N webhooks.
  await emulator.advance(149_999);
  const deliverStarted = performance.now();
  await emulator.advance(1);
  const deliverMs = performance.now() - deliverStarted;
  const delivered = emulator.deliveries().filter((d) => d.state === "delivered").length;
  await emulator.close();
  if (delivered !== N) throw new Error(`only ${delivered} of ${N} webhooks were delivered`);
  return { createMs, deliverMs };
}

async function bareRound(receiverUrl) {
  const payload = JSON.stringify({
    id: "evt_bench",
    type: "report.completed",
    createdAt: new Date().toISOString(),
    timestamp: new Date().toISOString(),
    data: { jobId: "job_bench", reportId: "rep_bench", status: "succeeded" },
  });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: N }, async () => {
      const signature = await signPayload({ payload, secret: SECRET });
      const response = await fetch(receiverUrl, {
        method: "POST",
        body: payload,
        headers: { "content-type": "application/json", "conduit-signature": signature },
      });
      await response.text();
      if (response.status !== 200) throw new Error(`bare POST answered ${response.status}`);
    }),
  );
  return performance.now() - started;
}

export async function runEmulatorBench(log = () => {}) {
  const receiver = await startReceiver();
  try {
    await bareRound(receiver.url); // warm-up of fetch and the receiver
    await emulatorRound(receiver.url);
    const rounds = [];
    for (let round = 0; round < ROUNDS; round++) {
      // alternate which goes first
      const first = round % 2 === 0;
      const bareA = first ? await bareRound(receiver.url) : undefined;
      const emu = await emulatorRound(receiver.url);
      const bareMs = bareA ?? (await bareRound(receiver.url));
      rounds.push({ ...emu, bareMs });
      log(
        `round ${round + 1}/${ROUNDS}: create ${emu.createMs.toFixed(0)} ms, deliver ${emu.deliverMs.toFixed(0)} ms, bare ${bareMs.toFixed(0)} ms`,
      );
    }
    const jobsPerSec = median(rounds.map((r) => (N / r.createMs) * 1000));
    const deliveriesPerSec = median(rounds.map((r) => (N / r.deliverMs) * 1000));
    const barePerSec = median(rounds.map((r) => (N / r.bareMs) * 1000));
    const overheadUs = median(rounds.map((r) => ((r.deliverMs - r.bareMs) / N) * 1000));
    const ratio = median(rounds.map((r) => r.bareMs / r.deliverMs));
    const received = await receiver.count();
    return {
      jobs: N,
      rounds: ROUNDS,
      jobsPerSec,
      deliveriesPerSec,
      barePerSec,
      overheadUsPerDelivery: overheadUs,
      deliveriesVsBare: ratio,
      received,
    };
  } finally {
    receiver.close();
  }
}

/** The result of {@link runEmulatorBench} as a markdown table. */
export function renderEmulator(result) {
  return [
    `| ${result.jobs} jobs, median of ${result.rounds} rounds | value |`,
    "| --- | ---: |",
    `| jobs created per second (HTTP, ${IN_FLIGHT} in flight) | ${result.jobsPerSec.toFixed(0)} |`,
    `| webhooks delivered per second (all at once) | ${result.deliveriesPerSec.toFixed(0)} |`,
    `| bare signed POSTs per second (all at once) | ${result.barePerSec.toFixed(0)} |`,
    `| emulator deliveries / bare POSTs | ${result.deliveriesVsBare.toFixed(2)}× |`,
    `| overhead per delivery | ${result.overheadUsPerDelivery.toFixed(0)} µs |`,
    "",
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runEmulatorBench((line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  process.stderr.write(`\n${renderEmulator(result)}`);
}
