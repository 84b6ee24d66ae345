// A load run of a fixed request count, for profiles compared per request:
//   node profile/load-count.mjs <url> <requests> <connections> <bodyBytes>
// Like http/load.mjs (one signed delivery of <bodyBytes>, keep-alive connections, autocannon),
// but it stops after <requests> answers instead of after a duration. Prints one JSON line.
import autocannon from "autocannon";
import { createEventBody, signBody } from "../lib/fixtures.mjs";

const [url, requestsText, connectionsText, bytesText] = process.argv.slice(2);
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
  amount: Number(requestsText),
  connections: Number(connectionsText),
  pipelining: 1,
  // A bound in case the server stalls: a run is never longer than this.
  duration: 600,
});
process.stdout.write(
  `${JSON.stringify({
    total: result.requests.total,
    requestsPerSec: result.requests.total / result.duration,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  })}\n`,
);
