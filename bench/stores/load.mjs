// The load generator of the stores benchmark: one long-lived process (forked by ../stores.mjs)
// that runs autocannon on request, so no run pays for a process start and every variant meets
// the same warmed-up generator. IPC: `{ type: "run", url, seconds, connections }` →
// `{ type: "result", requestsPerSec, total, non2xx, errors, timeouts, latencyP50Ms, latencyP99Ms }`.
//
// Every request is a NEW event: a 1 KiB `report.completed` whose `id` and `data.jobId` are both
// unique (a known event is deduplicated by its job outcome, `~job:<type>:<jobId>`, so a new id
// alone would be a duplicate), signed when it is sent. Latencies are autocannon's per-response
// times (fractional ms), kept in a bounded buffer and ranked here: its own histogram rounds to
// whole milliseconds, which hides everything at one connection.
import { createHmac, randomBytes } from "node:crypto";
import autocannon from "autocannon";
import { createEventBody, SECRET } from "../lib/fixtures.mjs";
import { quantile } from "../lib/stats.mjs";

const BODY_BYTES = 1024;
const ID = "evt_01JBENCH0000000000000000";
const FIXTURE_JOB = '"jobId":"job_01JBENCH"';
const JOB = "job_01JBENCH00000000000000";
const job = `"jobId":"${JOB}"`;
const template = createEventBody(BODY_BYTES - (job.length - FIXTURE_JOB.length), ID).replace(
  FIXTURE_JOB,
  job,
);
if (Buffer.byteLength(template) !== BODY_BYTES) throw new Error("stores load: body size is off");
const [head, middle, tail] = template.split(new RegExp(`${ID}|${JOB}`));
if (tail === undefined) throw new Error("stores load: the template lost its id or job id");
// A per-process prefix, then a counter: the same length as the template's id and job id.
const prefix = randomBytes(4).toString("hex");
const DIGITS = ID.length - "evt_".length - prefix.length;
let counter = 0;
const MAX_SAMPLES = 1 << 22;
const samples = new Float64Array(MAX_SAMPLES);

/** One bounded autocannon run; resolves the numbers ../stores.mjs keeps. */
async function run({ url, seconds, connections }) {
  let recorded = 0;
  const instance = autocannon({
    url,
    method: "POST",
    duration: seconds,
    connections,
    pipelining: 1,
    requests: [
      {
        setupRequest(request) {
          const n = String(counter++).padStart(DIGITS, "0");
          const body = `${head}evt_${prefix}${n}${middle}job_${prefix}${n}${tail}`;
          const t = Math.floor(Date.now() / 1000);
          const v1 = createHmac("sha256", SECRET).update(`${t}.${body}`).digest("hex");
          request.body = body;
          request.headers = {
            "content-type": "application/json",
            "mappa-signature": `t=${t},v1=${v1}`,
          };
          return request;
        },
      },
    ],
  });
  instance.on("response", (_client, status, _bytes, ms) => {
    if (status >= 200 && status < 300 && recorded < MAX_SAMPLES) samples[recorded++] = ms;
  });
  const result = await instance;
  const latencies = samples.subarray(0, recorded);
  return {
    requestsPerSec: result.requests.total / (result.duration || seconds),
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    latencyP50Ms: quantile(latencies, 0.5),
    latencyP99Ms: quantile(latencies, 0.99),
  };
}

process.on("message", async (message) => {
  if (message?.type !== "run") return;
  try {
    process.send({ type: "result", ...(await run(message)) });
  } catch (error) {
    process.send({
      type: "failed",
      message: error instanceof Error ? error.message : String(error),
    });
  }
});
process.on("disconnect", () => process.exit(0));
process.send({ type: "ready" });
