// The load generator of the Postgres benchmark, in its own process:
//   node postgres/load.mjs <url> <seconds> <connections>
// Every request carries a different event (a unique id and job id in a body of about 1 KiB),
// signed when it is sent, so every receiver does the whole first-delivery path: claim,
// handler, insert. (A known event type is keyed by its job's outcome, `~job:<type>:<jobId>`,
// so the job id must differ too, or every request after the first would be a duplicate.)
import { createHmac, randomBytes } from "node:crypto";
import autocannon from "autocannon";
import { createEventBody, SECRET } from "../lib/fixtures.mjs";

const [url, secondsText, connectionsText] = process.argv.slice(2);
const TEMPLATE_ID = "evt_01JBENCH0000000000000000";
const TEMPLATE_JOB = '"jobId":"job_01JBENCH"';
const template = createEventBody(1024, TEMPLATE_ID).replace(
  TEMPLATE_JOB,
  `"jobId":"${TEMPLATE_ID}"`,
);
const [before, middle, after] = template.split(TEMPLATE_ID);
// A per-process prefix, then a counter: the same length as the template id.
const prefix = `evt_${randomBytes(4).toString("hex")}`;
let counter = 0;

const result = await autocannon({
  url,
  method: "POST",
  duration: Number(secondsText),
  connections: Number(connectionsText),
  pipelining: 1,
  requests: [
    {
      setupRequest(request) {
        const id = `${prefix}${String(counter++).padStart(TEMPLATE_ID.length - prefix.length, "0")}`;
        const body = `${before}${id}${middle}${id}${after}`;
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

process.stdout.write(
  `${JSON.stringify({
    requestsPerSec: result.requests.total / (result.duration || Number(secondsText)),
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
  })}\n`,
);
