// Sizes the fixes recommended in BENCHMARKS.md: the prototype verifier of verify-fast.mjs with
// each fix switched on in turn, against the floor and the core, in the micro harness:
//   node prototype/measure.mjs [size=1024] [rounds=30]
import { createMappaWebhooks, parseEvent } from "@mappa-webhooks/core";
import { SECRET } from "../lib/fixtures.mjs";
import { formatRatio } from "../lib/stats.mjs";
import * as base from "../micro/contenders.mjs";
import { interleave, ratioOf } from "../micro.mjs";
import { createLeanHandle } from "./pipeline.mjs";
import { createVerifier } from "./verify-fast.mjs";

/** Prototype contenders by id; `construct*` ones also parse, like `constructEvent`. */
export const VARIANTS = {
  protoCopy: {},
  protoStraight: { straight: true },
  protoSecretBytes: { secretBytes: true },
  protoHexDigest: { hexDigest: true },
  protoHeaderFast: { headerFast: true },
  protoAll: { straight: true, secretBytes: true, hexDigest: true, headerFast: true },
  constructProtoAll: {
    straight: true,
    secretBytes: true,
    hexDigest: true,
    headerFast: true,
    parse: true,
  },
};

export const { inputFrom } = base;

const ALL_FIXES = { straight: true, secretBytes: true, hexDigest: true, headerFast: true };
const RECEIVER = { secret: SECRET, idempotency: false, on: { "report.completed": () => {} } };

/** The pipeline's `handle` as adapters call it: the core's, and the lean sketch. */
const PIPELINES = {
  handle: () => createMappaWebhooks(RECEIVER).handle,
  handleLean: () => createLeanHandle(RECEIVER),
  handleLeanProtoAll: () => createLeanHandle(RECEIVER, createVerifier(ALL_FIXES)),
};

export async function createContender(id, input) {
  if (PIPELINES[id] !== undefined) {
    const handle = PIPELINES[id]();
    const request = { method: "POST", headers: input.headers, rawBody: input.bytes, context: {} };
    return { async: true, run: async () => (await handle(request)).status === 200 };
  }
  const options = VARIANTS[id];
  if (options === undefined) return base.createContender(id, input);
  const { parse, ...switches } = options;
  const verify = createVerifier(switches);
  const params = { payload: input.bytes, headers: input.headers, secret: SECRET };
  if (!parse) return { async: true, run: () => verify(params) };
  // As `constructEvent`, with the verifier above.
  return {
    async: true,
    run: async () => {
      await verify(params);
      return parseEvent(params.payload);
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const size = Number(process.argv[2] ?? 1024);
  const rounds = Number(process.argv[3] ?? 30);
  const ids = [
    "floor",
    "floorParse",
    "verifyNode",
    "constructNode",
    ...Object.keys(VARIANTS),
    ...Object.keys(PIPELINES),
  ];
  const signed = await base.signedInputFor(size);
  const { perRound } = await interleave(ids, signed, { modulePath: import.meta.url, rounds });
  // Also printed: the median ns per call, for the absolute size of each change.
  console.log(
    `${size} B, ${rounds} rounds: same-round ratio vs the floor (construct*, handle*: vs floor + JSON.parse)`,
  );
  for (const id of ids) {
    const parses = id.startsWith("construct") || id.startsWith("handle");
    const r = ratioOf(perRound, id, parses ? "floorParse" : "floor");
    const ns = perRound.map((times) => times[id]).sort((a, b) => a - b)[perRound.length >> 1];
    console.log(
      `${id.padEnd(18)} ${formatRatio(r.median)}  [${formatRatio(r.p25)} – ${formatRatio(r.p75)}]  ${Math.round(ns)} ns`,
    );
  }
}
