// The load generator, in its own process so it never shares an event loop with a server:
//   node http/load.mjs <url> <seconds> <connections> <bodyBytes>
// Signs one delivery of <bodyBytes> (a realistic event) and POSTs it for <seconds> over
// <connections> keep-alive connections with autocannon. Prints one JSON line with the result.
import autocannon from "autocannon";
import { createEventBody, signBody } from "../lib/fixtures.mjs";

const [url, secondsText, connectionsText, bytesText] = process.argv.slice(2);
const body = createEventBody(Number(bytesText));
const headers = {
  "content-type": "application/json",
  "mappa-signature": await signBody(body),
};

const result = await autocannon({
  url,
  method: "POST",
  body,
  headers,
  duration: Number(secondsText),
  connections: Number(connectionsText),
  pipelining: 1,
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
