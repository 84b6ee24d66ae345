import type { HmacEngine } from "./types.js";

const encoder = new TextEncoder();

// Importing a key costs more than the HMAC of a small body, so keys are imported once per
// secret. A receiver has one or two secrets; the bound only guards against misuse.
const MAX_CACHED_KEYS = 16;
const keys = new Map<string, Promise<CryptoKey>>();

function keyFor(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (key === undefined) {
    if (keys.size >= MAX_CACHED_KEYS) keys.clear();
    key = crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    // A failed import must not poison the cache.
    key.catch(() => keys.delete(secret));
    keys.set(secret, key);
  }
  return key;
}

function signedBytes(prefix: string, body: string | Uint8Array): Uint8Array {
  if (typeof body === "string") return encoder.encode(prefix + body);
  const head = encoder.encode(prefix);
  const out = new Uint8Array(head.byteLength + body.byteLength);
  out.set(head, 0);
  out.set(body, head.byteLength);
  return out;
}

const HEX_DIGITS = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

export const hmacEngine: HmacEngine = {
  name: "web",
  async digestHex(secret, prefix, body) {
    const key = await keyFor(secret);
    const data = signedBytes(prefix, body);
    const digest = new Uint8Array(
      await crypto.subtle.sign("HMAC", key, data as Uint8Array<ArrayBuffer>),
    );
    let hex = "";
    for (const byte of digest) hex += HEX_DIGITS[byte];
    return hex;
  },
};
