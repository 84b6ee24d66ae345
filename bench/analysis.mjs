// What BENCHMARKS.md says about a missed target: the cause found by profiling during
// development and the fix it calls for, with the effect measured on candidate fixes (kept in
// the git history, not shipped). Keyed by target id prefix; each function gets the full target
// id. The profiles printed below the tables are from the run that wrote the file.

/** Printed once under the gaps when an HTTP target is missed; the HTTP items refer to it. */
export const PIPELINE_NOTE =
  "**The core pipeline's share of the HTTP gaps.** The fixes sized on candidate " +
  "pipelines are in the core: the verifier's " +
  "arguments and the responses are built without object spreads (the spread cost ~20 µs of " +
  "server CPU per request in a Fastify server), verification runs without a promise on " +
  "node:crypto, and handlers are awaited only when they return one. With them every adapter " +
  "measured 0.97–1.06× the optimal route. A miss now is first of all noise between rounds " +
  "(see the quartiles and the per-CPU-second ratio); profile the adapter's server with " +
  "`node profile/focus.mjs` before changing code.";

export const ANALYSIS = {
  verify: () =>
    "The core already took the fixes sized on a candidate verifier (hex digest from " +
    "node:crypto compared as a string, canonical-header fast path, cached key bytes, no " +
    "per-call closures), which brought this ratio from 1.55–1.64× to ~1.2×. What remains, " +
    "measured step by step on the floor itself: settling a Promise and awaiting it ~+10% " +
    "(inherent to an async API), hashing the `t.` prefix as a string (UTF-8 encoding per " +
    "call) ~+5%, and reading the header, the clock and the options a few percent. The only " +
    "large remaining step would be a synchronous node:crypto entry point (e.g. a " +
    "`verifySignatureSync` in the node build, used by `constructEvent` and the pipeline), " +
    "which removes the Promise: an API decision left open, since the pipeline and the " +
    "adapters already verify without the Promise. At 16 KiB and above the ratio is ≤ 1.05×.",
  construct: () =>
    "`constructEvent` is `verifySignature` followed by `parseEvent`; `parseEvent` itself costs " +
    "~3% more than `JSON.parse(bytes.toString())`. A miss here is the verifier's overhead " +
    "(previous item) diluted by the parse; with the verifier fixes it measured 1.07–1.09×.",
  web: () =>
    "On Node, `crypto.subtle.sign` is a job on the libuv thread pool: every call pays a " +
    "thread hand-off that dominates small bodies and varies a lot on a busy machine, and the " +
    "SDK pattern pays the same hand-off plus the key import. The ratio is therefore noisy " +
    "(see the quartiles), and lower when the machine is busy. The Web Crypto build exists for " +
    "edge runtimes, where it is the only option; on Node the default `node` export condition " +
    "selects node:crypto, an order of magnitude faster than either.",
  http: (id) => {
    const framework = id.slice("http-".length);
    if (framework === "fastify") {
      return (
        "Fastify's own per-request cost is so low (the bare route serves ~2.4× the optimal " +
        "route's req/s) that any CPU the core adds shows almost fully. The Fastify side of the " +
        "adapter costs little: the same plugin around the optimal route's synchronous verify " +
        "measured 0.91–1.0×, and with the " +
        "pipeline fixes (see the note below) the adapter itself measured 0.98×."
      );
    }
    if (framework === "hono") {
      return (
        "Two causes were found and fixed: the adapter read `c.executionCtx` (which throws on " +
        "Node) on every request, ~4% of the server's CPU, and now reads it only for " +
        '`ack: "first"`; and the core pipeline\'s bookkeeping (see the note below). With both ' +
        "fixes the adapter measured 1.06×."
      );
    }
    return (
      "The adapter now reads the body with plain listeners (the core's `readBodyWithLimit` " +
      "fast path for Node streams, which a listener-based candidate sized at 0.90× where the " +
      "`for await` reader gave 0.80×); with the " +
      "pipeline fixes (see the note below) it measured 0.97×." +
      " Where the rest goes, frame by frame against the optimal route (`node profile/adapter-vs-optimal.mjs express <dir>`): " +
      "reading the body with abort detection, the 408 deadline and the already-read check (~9 µs per request), garbage " +
      "collection of the typed event and the answer (~10 µs), and the two documented property writes `req.rawBody` and " +
      "`req.mappaEvent` (~5.6 µs), which cost microseconds because Express gives every `req` and `res` hidden classes of " +
      'their own (see the section "Express adapter against its hand-written optimal route" below).'
    );
  },
  memory: () =>
    "Not seen during development: every adapter answered 413 with well under 10 MiB of RSS " +
    "growth. A miss means the server buffered the body or never answered; the table shows " +
    "which.",
};
