// Micro benchmark: the cost of verifying (and parsing) one webhook, relative to the physical
// floor, for us and the libraries a user would pick instead.
//
// Harness: each contender runs in its own worker thread (own JIT feedback, see
// micro/contenders.mjs); this thread only decides what runs when, so one sample runs at a time.
// For each body size every contender is warmed up and calibrated to a batch size that takes
// about SAMPLE_MS. Then ROUNDS interleaved rounds run. A round makes PASSES passes over all
// contenders on the same input (the starting contender rotates from round to round), timing
// one batch of each per pass, and keeps each contender's fastest pass (a pass preempted by
// another process is dropped). Each contender's time per call is divided by the floor's in that
// same round, so drift and noise hit both sides of a ratio alike. All this is repeated in
// TRIALS independent trials with fresh workers; the result is the median of the trials' median
// ratios. Async contenders are awaited inside the timed loop.
//
// Run alone: `node micro.mjs` prints the result as JSON on stdout.
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { MICRO_SIZES, sizeLabel } from "./lib/fixtures.mjs";
import { median, quantile } from "./lib/stats.mjs";
import { CONTENDERS, signedInputFor } from "./micro/contenders.mjs";

/** Independent trials (fresh workers each) and interleaved rounds per trial. */
const TRIALS = Number(process.env.BENCH_MICRO_TRIALS ?? 3);
const ROUNDS = Number(process.env.BENCH_MICRO_ROUNDS ?? 8);
const SAMPLE_MS = Number(process.env.BENCH_MICRO_SAMPLE_MS ?? 4);
/** Passes over all contenders per round; a round keeps each contender's fastest pass. */
const PASSES = Number(process.env.BENCH_MICRO_PASSES ?? 3);
const WARMUP_MS = Number(process.env.BENCH_MICRO_WARMUP_MS ?? 100);

const CONTENDERS_MODULE = new URL("./micro/contenders.mjs", import.meta.url).href;
const WORKER = fileURLToPath(new URL("./micro/worker.mjs", import.meta.url));

/** A worker running one contender; `time(n)` resolves the ns per call of a batch of n. */
function startContender(modulePath, id, signed) {
  const worker = new Worker(WORKER, { workerData: { modulePath, id, signed } });
  let pending;
  worker.on("message", (message) => {
    const settle = pending;
    pending = undefined;
    if (message.error) settle?.reject(new Error(`${id}: ${message.error}`));
    else settle?.resolve(message.ns);
  });
  worker.on("error", (error) => pending?.reject(error));
  return {
    id,
    time(n) {
      return new Promise((resolve, reject) => {
        pending = { resolve, reject };
        worker.postMessage({ n });
      });
    },
    close: () => worker.terminate(),
  };
}

/** Warms a contender up and picks a batch size that takes about SAMPLE_MS. */
async function calibrate(contender) {
  let n = 1;
  let perCall = await contender.time(n);
  // Bounded: the batch only grows until it reaches the sample time.
  while (perCall * n < SAMPLE_MS * 1e6 && n < 1e7) {
    n *= 2;
    perCall = await contender.time(n);
  }
  const warmupEnd = performance.now() + WARMUP_MS;
  while (performance.now() < warmupEnd) perCall = await contender.time(n);
  return Math.max(1, Math.round((SAMPLE_MS * 1e6) / perCall));
}

/**
 * Runs interleaved rounds over contender ids (each built by `modulePath`'s `createContender` in
 * its own worker) on the input `signed`. Returns the batch sizes and, per round, each
 * contender's time per call in ns.
 */
export async function interleave(
  ids,
  signed,
  { modulePath = CONTENDERS_MODULE, rounds = ROUNDS } = {},
) {
  const contenders = ids.map((id) => startContender(modulePath, id, signed));
  try {
    const batch = {};
    for (const contender of contenders) batch[contender.id] = await calibrate(contender);
    const perRound = [];
    for (let round = 0; round < rounds; round++) {
      const times = Object.create(null);
      for (let pass = 0; pass < PASSES; pass++) {
        for (let k = 0; k < contenders.length; k++) {
          const contender = contenders[(round + k) % contenders.length];
          const ns = await contender.time(batch[contender.id]);
          times[contender.id] = Math.min(times[contender.id] ?? Number.POSITIVE_INFINITY, ns);
        }
      }
      perRound.push(times);
    }
    return { batch, perRound };
  } finally {
    await Promise.all(contenders.map((contender) => contender.close()));
  }
}

/** Median and quartiles of the same-round ratio `id / baseline`. */
export function ratioOf(perRound, id, baseline) {
  const ratios = perRound.map((times) => times[id] / times[baseline]);
  return { median: median(ratios), p25: quantile(ratios, 0.25), p75: quantile(ratios, 0.75) };
}

/** Median of a list of per-trial ratio summaries, with the quartiles of all rounds pooled. */
function combineTrials(trialRounds, id, baseline) {
  const trialMedians = trialRounds.map((perRound) => ratioOf(perRound, id, baseline).median);
  const pooled = ratioOf(trialRounds.flat(), id, baseline);
  return { median: median(trialMedians), p25: pooled.p25, p75: pooled.p75, trials: trialMedians };
}

async function benchSize(size) {
  const signed = await signedInputFor(size);
  const ids = CONTENDERS.map((c) => c.id);
  // Independent trials with fresh workers: one worker that landed in a slow state (a bad JIT
  // decision, an unlucky core) sways one trial, not the median of the trials.
  const trialRounds = [];
  const batches = [];
  for (let trial = 0; trial < TRIALS; trial++) {
    const { batch, perRound } = await interleave(ids, signed);
    trialRounds.push(perRound);
    batches.push(batch);
  }
  const results = CONTENDERS.map(({ id, label }) => {
    const ns = median(trialRounds.flat().map((times) => times[id]));
    return {
      id,
      label,
      batch: batches[0][id],
      medianNs: ns,
      opsPerSec: 1e9 / ns,
      vsFloor: combineTrials(trialRounds, id, "floor"),
      vsFloorParse: combineTrials(trialRounds, id, "floorParse"),
      // How many times slower than our Web Crypto path (the SDK target reads this one).
      vsVerifyWeb: combineTrials(trialRounds, id, "verifyWeb"),
    };
  });
  return { size, label: sizeLabel(size), results };
}

/** The whole micro benchmark; `log` receives progress lines. */
export async function runMicro(sizes = MICRO_SIZES, log = () => {}) {
  const out = [];
  for (const size of sizes) {
    const started = performance.now();
    out.push(await benchSize(size));
    log(`micro ${sizeLabel(size)}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  return { trials: TRIALS, rounds: ROUNDS, passes: PASSES, sampleMs: SAMPLE_MS, sizes: out };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.env.BENCH_MICRO_SIZES
    ? process.env.BENCH_MICRO_SIZES.split(",").map(Number)
    : MICRO_SIZES;
  const result = await runMicro(sizes, (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
