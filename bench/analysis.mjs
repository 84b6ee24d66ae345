// What BENCHMARKS.md says about a missed target: the cause found by profiling during
// development and the fix it calls for, with the effect measured on the prototypes in
// bench/prototype/. Keyed by target id prefix; each function gets the full target id. The
// profiles printed below the tables are from the run that wrote the file. Written against
// core b0c856e, which already carries the verifier fixes sized in prototype/verify-fast.mjs.

/** Printed once under the gaps when an HTTP target is missed; the HTTP items refer to it. */
export const PIPELINE_NOTE =
  "**The core pipeline's share of the HTTP gaps.** In one Fastify server (`node prototype/pipeline-cpu.mjs`, server CPU time per request, " +
  "1 KiB events) the hand-written route costs ~50 µs, the core's `verifySignature` called with " +
  "an object literal + `parseEvent` ~54 µs (1.06×), the same call with its arguments built as " +
  "`{ ...fixedOptions, payload, headers }` ~73 µs (1.45×), and `webhooks.handle` ~74 µs " +
  "(1.47×): the object spread that packages/core/src/pipeline.ts `verifyAndParse` uses to " +
  "build the verifier's arguments (`{ ...verifyOptions, payload: input.rawBody, headers: " +
  "input.headers }`) costs ~20 µs of CPU per request in a server (1.9 µs in an isolated " +
  "loop), and the rest of `handle` next to nothing. Fix: build the arguments as a literal, " +
  "`const params = { secret: secrets, payload: input.rawBody, headers: input.headers }`, then " +
  "assign `toleranceSec`, `now` and `headerName` only when they are configured (or let " +
  "`VerifySignatureParams` take `| undefined` and pass them directly); likewise build " +
  "`respond`'s result without `...extra` and `{ ...JSON_HEADERS }` spreads. The lean sketch of " +
  "`handle` in prototype/pipeline.mjs, which does this, measured ~53 µs (1.04×).";

export const ANALYSIS = {
  verify: () =>
    "The core already took the fixes sized in prototype/verify-fast.mjs (hex digest from " +
    "node:crypto compared as a string, canonical-header fast path, cached key bytes, no " +
    "per-call closures), which brought this ratio from 1.55–1.64× to ~1.2×. What remains, " +
    "measured step by step on the floor itself: settling a Promise and awaiting it ~+10% " +
    "(inherent to an async API), hashing the `t.` prefix as a string (UTF-8 encoding per " +
    "call) ~+5%, and reading the header, the clock and the options a few percent. The only " +
    "large remaining step would be a synchronous node:crypto entry point (e.g. a " +
    "`verifySignatureSync` in the node build, used by `constructEvent` and the pipeline), " +
    "which removes the Promise; at 16 KiB and above the ratio is already ≤ 1.05×.",
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
        "(variant `experiment`, BENCH_HTTP_PROTOTYPES=1) measured 0.91–1.0×. The cost is in " +
        "the core's pipeline: see the note below. The adapter's plugin around the lean " +
        "pipeline sketch (variant `prototype`) measured 0.96× where the adapter measured 0.71× " +
        "in the same run."
      );
    }
    if (framework === "hono") {
      return (
        "Two causes. (1) The adapter builds `waitUntil` on every request by reading " +
        "`c.executionCtx` inside try/catch (`waitUntilOf` in packages/hono/src/index.ts); on " +
        "Node that getter throws, so every request creates and throws an Error with a stack " +
        "trace (`get executionCtx`, ~4% of the server's CPU in the profile). Only " +
        '`ack: "first"` ever calls `waitUntil`. Fix: pass a function that reads ' +
        "`c.executionCtx` only when called, `(promise) => { try { " +
        "c.executionCtx.waitUntil(promise) } catch { /* Node, Bun: it runs on */ } }` " +
        "(prototype `honoPrototype` in prototype/adapters.mjs measured 1.01× the optimal route " +
        "where the adapter measured 0.93× in the same run). " +
        "(2) The core's pipeline: see the note below."
      );
    }
    return (
      "The adapter now reads the body with plain listeners (the core's `readBodyWithLimit` " +
      "fast path for Node streams, which the listener-based prototype `expressPrototype` in " +
      "prototype/adapters.mjs sized: 0.90× where the `for await` reader gave 0.80×). What " +
      "remains is in the core's pipeline, diluted by Express's own per-request cost (the " +
      "bare route is only ~1.35× the optimal one): see the note below."
    );
  },
  memory: () =>
    "Not seen during development: every adapter answered 413 with well under 10 MiB of RSS " +
    "growth. A miss means the server buffered the body or never answered; the table shows " +
    "which.",
};
