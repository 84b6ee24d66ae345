// The micro benchmark's contenders. Each one runs in its own worker thread (see worker.mjs), so
// only its own calls shape the JIT feedback of the code it uses, node:crypto's internals
// included: a Buffer key in one library and a string key in another would otherwise make the
// shared call sites polymorphic and slow every contender down a little, the floor too.
// Libraries are imported by the contender that uses them, so a worker loads only its own.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createEventBody, SECRET, signBody } from "../lib/fixtures.mjs";

/** Stripe's tolerance is an argument; a large one keeps long runs valid. */
const LARGE_TOLERANCE_SEC = 10 * 365 * 24 * 3600;
const MESSAGE_ID = "msg_2bench0000000000000000000";
/** Standard Webhooks and Svix take the secret as `whsec_<base64>`; the same key bytes. */
export const STANDARD_SECRET = `whsec_${Buffer.from(SECRET).toString("base64")}`;

/** The contenders in table order, with the label BENCHMARKS.md shows. */
export const CONTENDERS = [
  ["floor", "floor: `createHmac` + `timingSafeEqual` (pre-decoded bytes)"],
  ["floorParse", "floor + `JSON.parse(bytes.toString())`"],
  ["verifyNode", "**ours** `verifySignature` (node:crypto)"],
  ["verifyWeb", "**ours** `verifySignature` (Web Crypto, `/web`)"],
  ["constructNode", "**ours** `constructEvent` (node:crypto)"],
  ["constructWeb", "**ours** `constructEvent` (Web Crypto, `/web`)"],
  ["mappaSdk", "Mappa SDK pattern (`importKey` per call, hex compare)"],
  ["stripeConstruct", "Stripe `webhooks.constructEvent` (verify + parse)"],
  ["stripeVerify", "Stripe `webhooks.signature.verifyHeader`"],
  ["standardwebhooks", "standardwebhooks `Webhook.verify` (verify + parse)"],
  ["svix", "svix `Webhook.verify` (verify + parse)"],
].map(([id, label]) => ({ id, label }));

/**
 * Signs one delivery of `size` bytes for every scheme. Runs in the main thread, so no worker
 * calls a signer before it is timed.
 */
export async function signedInputFor(size, t = Math.floor(Date.now() / 1000)) {
  const { Webhook: StandardWebhook } = await import("standardwebhooks");
  const { Webhook: SvixWebhook } = await import("svix");
  const { default: Stripe } = await import("stripe");
  const text = createEventBody(size);
  const header = await signBody(text, t);
  const at = new Date(t * 1000);
  const standardSignature = new StandardWebhook(STANDARD_SECRET).sign(MESSAGE_ID, at, text);
  const svixSignature = new SvixWebhook(STANDARD_SECRET).sign(MESSAGE_ID, at, text);
  const stripeHeader = new Stripe("sk_test_bench").webhooks.generateTestHeaderString({
    payload: text,
    secret: SECRET,
    timestamp: t,
  });
  if (stripeHeader !== header) throw new Error("Stripe and Mappa headers differ for one input");
  return { size, t, header, standardSignature, svixSignature };
}

/** The inputs a contender sees: the raw body as bytes (and text) and Node-style headers. */
export function inputFrom(signed) {
  const text = createEventBody(signed.size);
  const bytes = Buffer.from(text);
  const headers = {
    host: "127.0.0.1:3000",
    "content-type": "application/json",
    "content-length": String(signed.size),
    "user-agent": "Mappa-Webhooks/1.0",
    "mappa-signature": signed.header,
  };
  return { ...signed, text, bytes, headers };
}

/**
 * Builds one contender: `run` performs one call and returns something truthy on success;
 * `async` contenders return a promise the timed loop awaits.
 */
export async function createContender(id, input) {
  const { text, bytes, headers, header, t } = input;
  switch (id) {
    case "floor":
    case "floorParse": {
      // Everything decoded before the timed region: key, prefix, body and expected digest.
      const secretBytes = Buffer.from(SECRET);
      const prefixBytes = Buffer.from(`${t}.`);
      const expected = Buffer.from(header.slice(header.indexOf("v1=") + 3), "hex");
      const floor = () =>
        timingSafeEqual(
          createHmac("sha256", secretBytes).update(prefixBytes).update(bytes).digest(),
          expected,
        );
      return id === "floor"
        ? { run: floor }
        : { run: () => floor() && JSON.parse(bytes.toString()) };
    }
    case "verifyNode":
    case "constructNode":
    case "verifyWeb":
    case "constructWeb": {
      const core = id.endsWith("Node")
        ? await import("@mappa-webhooks/core")
        : await import("@mappa-webhooks/core/web");
      const expectedRuntime = id.endsWith("Node") ? "node" : "web";
      if (core.cryptoRuntime !== expectedRuntime) throw new Error(`${id}: wrong core build`);
      const params = { payload: bytes, headers, secret: SECRET };
      const fn = id.startsWith("verify") ? core.verifySignature : core.constructEvent;
      return { async: true, run: () => fn(params) };
    }
    case "mappaSdk": {
      const { mappaSdkVerifySignature } = await import("../lib/mappa-sdk-pattern.mjs");
      return {
        async: true,
        run: () => mappaSdkVerifySignature({ payload: text, headers, secret: SECRET }),
      };
    }
    case "stripeConstruct":
    case "stripeVerify": {
      const { default: Stripe } = await import("stripe");
      const { webhooks } = new Stripe("sk_test_bench");
      return id === "stripeConstruct"
        ? { run: () => webhooks.constructEvent(bytes, header, SECRET, LARGE_TOLERANCE_SEC) }
        : {
            run: () => webhooks.signature.verifyHeader(bytes, header, SECRET, LARGE_TOLERANCE_SEC),
          };
    }
    case "standardwebhooks": {
      const { Webhook: StandardWebhook } = await import("standardwebhooks");
      const webhook = new StandardWebhook(STANDARD_SECRET);
      const standardHeaders = {
        "webhook-id": MESSAGE_ID,
        "webhook-timestamp": String(t),
        "webhook-signature": input.standardSignature,
      };
      return { run: () => webhook.verify(bytes, standardHeaders) };
    }
    case "svix": {
      const { Webhook: SvixWebhook } = await import("svix");
      const webhook = new SvixWebhook(STANDARD_SECRET);
      const svixHeaders = {
        "svix-id": MESSAGE_ID,
        "svix-timestamp": String(t),
        "svix-signature": input.svixSignature,
      };
      return { run: () => webhook.verify(bytes, svixHeaders) };
    }
    default:
      throw new Error(`unknown contender ${id}`);
  }
}
