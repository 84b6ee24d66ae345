import { MappaWebhookError } from "./errors.js";

/** Requests larger than this are answered 413 unless `maxBodyBytes` says otherwise. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** The error for a body over the limit; adapters use it when their framework detects it. */
export function payloadTooLarge(limit: number): MappaWebhookError {
  return new MappaWebhookError(
    "payload_too_large",
    `The request body is larger than ${limit} bytes. Raise \`maxBodyBytes\` if Mappa's events for you are legitimately this large.`,
  );
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/**
 * Reads a body to the end, stopping as soon as it exceeds `limit` bytes (the rest is never
 * buffered). Takes a Fetch `ReadableStream` or any async iterable of bytes, such as a Node
 * `IncomingMessage` (left open on an early stop, so the caller can still answer 413).
 * Rejects with `payload_too_large`.
 *
 * @example
 * ```ts
 * const raw = await readBodyWithLimit(req, 1024 * 1024); // Node request stream
 * ```
 */
export async function readBodyWithLimit(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array | string> | null | undefined,
  limit: number = DEFAULT_MAX_BODY_BYTES,
): Promise<Uint8Array> {
  if (source == null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const take = (chunk: Uint8Array | string): boolean => {
    const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
    total += bytes.byteLength;
    if (total > limit) return false;
    chunks.push(bytes);
    return true;
  };
  if (typeof (source as ReadableStream).getReader === "function") {
    const reader = (source as ReadableStream<Uint8Array>).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!take(value)) {
        reader.cancel().catch(() => {});
        throw payloadTooLarge(limit);
      }
    }
  } else {
    // A Node stream is iterated without destroying it on an early stop: destroying the request
    // would reset the socket before the 413 could be written.
    const nodeStream = source as {
      iterator?: (options: { destroyOnReturn: boolean }) => AsyncIterable<Uint8Array | string>;
    };
    const chunks$ =
      typeof nodeStream.iterator === "function"
        ? nodeStream.iterator({ destroyOnReturn: false })
        : (source as AsyncIterable<Uint8Array | string>);
    for await (const chunk of chunks$) {
      if (!take(chunk)) throw payloadTooLarge(limit);
    }
  }
  return concat(chunks, total);
}
