/** The payload forms every entry point accepts: the raw body, never a parsed object. */
export type RawBody = string | Uint8Array | ArrayBuffer;

/**
 * HMAC-SHA256 as the runtime offers it. `node:crypto` on Node, Web Crypto elsewhere; the
 * package.json `exports` conditions pick the build, so a bundle carries only one.
 */
export interface HmacEngine {
  readonly name: "node" | "web";
  /**
   * Lower-case hex HMAC-SHA256 keyed with the secret's UTF-8 bytes over `prefix` then `body`.
   * Hex, because the header carries hex: comparing strings skips decoding every candidate.
   */
  digestHex(secret: string, prefix: string, body: string | Uint8Array): string | Promise<string>;
}
