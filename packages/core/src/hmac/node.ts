import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import type { HmacEngine } from "./types.js";

// createHmac re-encodes a string key on every call; a receiver has one or two secrets, so
// their bytes are kept. The bound only guards against misuse.
const MAX_CACHED_KEYS = 16;
const keys = new Map<string, Buffer>();

function keyFor(secret: string): Buffer {
  let key = keys.get(secret);
  if (key === undefined) {
    if (keys.size >= MAX_CACHED_KEYS) keys.clear();
    key = Buffer.from(secret, "utf8");
    keys.set(secret, key);
  }
  return key;
}

export const hmacEngine: HmacEngine = {
  name: "node",
  digestHex(secret, prefix, body) {
    return createHmac("sha256", keyFor(secret)).update(prefix).update(body).digest("hex");
  },
};
