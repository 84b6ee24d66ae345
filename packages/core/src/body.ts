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

/** The parts of a Node `Readable` (such as `IncomingMessage`) the reader uses. */
interface NodeReadable {
  on(event: string, listener: (...args: never[]) => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
  pause(): unknown;
  readableEnded?: boolean;
}

function isNodeStream(source: unknown): source is NodeReadable {
  const stream = source as Partial<NodeReadable>;
  return (
    typeof stream.on === "function" &&
    typeof stream.pause === "function" &&
    typeof stream.off === "function"
  );
}

// Plain 'data'/'end' listeners rather than an async iterator: this runs for every delivery and
// the iterator's promise per chunk measurably costs throughput. On overflow the stream is paused,
// not destroyed: destroying the request would reset the socket before the 413 is written.
function readNodeStream(stream: NodeReadable, limit: number): Promise<Uint8Array> {
  if (stream.readableEnded === true) {
    return Promise.reject(
      new MappaWebhookError(
        "body_already_parsed",
        "The request stream was already read to its end, so its raw bytes are gone. Read the body before any body parser runs.",
      ),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let total = 0;
    const cleanup = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.off("close", onClose);
    };
    const onData = (chunk: Uint8Array | string) => {
      const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
      total += bytes.byteLength;
      if (total > limit) {
        cleanup();
        stream.pause();
        reject(payloadTooLarge(limit));
        return;
      }
      chunks.push(bytes);
    };
    const onEnd = () => {
      cleanup();
      resolve(concat(chunks, total));
    };
    const onError = (error: unknown) => {
      cleanup();
      reject(error);
    };
    const onClose = () => {
      cleanup();
      reject(new Error("The request was closed before its body was complete."));
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
  });
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
  } else if (isNodeStream(source)) {
    return readNodeStream(source, limit);
  } else {
    for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
      if (!take(chunk)) throw payloadTooLarge(limit);
    }
  }
  return concat(chunks, total);
}
