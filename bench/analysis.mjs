// What BENCHMARKS.md says about a missed target: the cause found by profiling during
// development and the fix it calls for, with the effect measured on the prototypes in
// bench/prototype/. Keyed by target id prefix; each function gets the full target id.
// The profiles printed below the tables are from the run that wrote the file.

const VERIFY_CAUSE =
  "At 1 KiB the floor is ~2.5 µs and the HMAC itself costs the same inside `verifySignature` " +
  "(the `Hmac`/`update`/`digest` frames take the same absolute time in both profiles); the " +
  "gap is everything around it. Measured step by step: comparing a byte digest with the received hex through the JS table " +
  'loop (`digestMatchesHex`) costs ~0.45 µs (+18%), where `digest("hex")` plus a ' +
  "constant-time string compare costs ~0.05 µs; the general header parser ~0.25 µs; " +
  "settling a Promise and awaiting it ~0.25 µs (+10%, inherent to the async API); keying " +
  "`createHmac` with the secret string and hashing the `t.` prefix string (UTF-8 encoding per " +
  "call) ~+5% each. Fix (packages/core/src/hmac/node.ts and verify.ts): (1) on node:crypto " +
  'let the engine return `digest("hex")` and compare it with each `v1` value in constant time, ' +
  "case-folding with `| 0x20` and rejecting non-hex characters through the existing " +
  "`HEX_VALUES` table (prototype `hexDigest`); (2) a fast path in `parseSignatureHeader` for " +
  "the canonical `t=<digits>,v1=<64 chars>` (prefix check, one `indexOf`, two slices, then " +
  "the same `T_PATTERN` test; anything else takes the full parser; prototype `headerFast`); " +
  "(3) cache the secret's UTF-8 bytes per secret in the node engine (prototype " +
  "`secretBytes`); (4) build no closures per call in `verifyNow` (prototype `straight`). " +
  "With all four the prototype measured 1.12× and 1.24× the floor at 1 KiB in two runs on " +
  "this busy machine (the core: 1.48× and 1.59× in the same runs), i.e. at or near the target; " +
  "what remains is the Promise and the string encodings.";

export const ANALYSIS = {
  verify: () => VERIFY_CAUSE,
  construct: () =>
    "`constructEvent` is `verifySignature` followed by `parseEvent`; `parseEvent` itself costs " +
    "only ~3% more than `JSON.parse(bytes.toString())` (TextDecoder and the field checks), and " +
    "making `constructEvent` non-async changes nothing measurable. The gap is the verifier's " +
    "overhead above the floor (see the previous item), diluted by the parse. With the four " +
    "verifier fixes the prototype measured 1.09× (floor + JSON.parse) at 1 KiB in both runs " +
    "(core: 1.22×, 1.23×): the target is met once they land.",
  web: () =>
    "On Node, `crypto.subtle.sign` is a job on the libuv thread pool: every call pays a " +
    "thread hand-off that dominates small bodies and varies a lot on a busy machine, and the " +
    "SDK pattern pays the same hand-off plus the key import. The ratio is therefore noisy " +
    "(see the quartiles) and smaller than on an idle machine. The Web Crypto build exists for " +
    "edge runtimes, where it is the only option; on Node the default `node` export condition " +
    "selects node:crypto, which is an order of magnitude faster than either.",
  http: (id) => {
    const framework = id.slice("http-".length);
    if (framework === "express") {
      return (
        "The request body is read with `for await` over the request (the core's " +
        "`readBodyWithLimit` turns a Node stream into `req.iterator({ destroyOnReturn: false })`): " +
        "an async iterator, its promises and listener churn per request took ~7% of the " +
        "server's CPU in the profile, against ~2% for the optimal route's 'data'/'end' " +
        "listeners. Fix (packages/core/src/body.ts, `readBodyWithLimit`): for a Node stream " +
        "(has `on` and `pause`), collect chunks with 'data'/'end'/'error'/'aborted' listeners " +
        "and on overflow remove them, `pause()` the stream (left open for the 413) and reject " +
        "`payload_too_large` (prototype: `readNodeBodyWithLimit` in prototype/adapters.mjs, " +
        "served as the `prototype` variant with BENCH_HTTP_PROTOTYPES=1: 0.90× the optimal route " +
        "where the adapter measured 0.80× in the same run). The remaining difference is the " +
        "verifier's overhead (see the micro items) and the pipeline's bookkeeping."
      );
    }
    if (framework === "hono") {
      return (
        "The adapter builds `waitUntil` on every request by reading `c.executionCtx` inside " +
        "try/catch (`waitUntilOf` in packages/hono/src/index.ts); on Node that getter throws, so " +
        "every request creates and throws an Error with a stack trace: 3.5–4% of the server's " +
        'CPU in the profiles (`get executionCtx`). Only `ack: "first"` ever calls `waitUntil`. ' +
        "Fix: pass a function that reads `c.executionCtx` only when called, `(promise) => { try " +
        "{ c.executionCtx.waitUntil(promise) } catch { /* Node, Bun: it runs on */ } }` " +
        "(prototype: `honoPrototype` in prototype/adapters.mjs, served as the `prototype` " +
        "variant with BENCH_HTTP_PROTOTYPES=1: 1.01× the optimal route where the adapter " +
        "measured 0.87× in the same run). Smaller costs: `readRawBody` " +
        "copies the body once more to fill Hono's body cache (`copy.set(bytes)`); the copy can " +
        "be skipped when `bytes` spans its whole buffer."
      );
    }
    return (
      "The Fastify adapter's path matches the optimal route's (scoped buffer parser, one " +
      "`handle` call); a miss here is within the noise of the run (see the quartiles), apart " +
      "from the verifier's overhead (see the micro items)."
    );
  },
  memory: () =>
    "Not seen during development: every adapter answered 413 with well under 10 MiB of RSS " +
    "growth. A miss means the server buffered the body or never answered; the table shows " +
    "which.",
};
