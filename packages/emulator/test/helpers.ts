import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  /** performance.now() when the request ended. */
  at: number;
}

/** A real receiver on 127.0.0.1 that records every request and answers `answer(n)` (n from 1). */
export async function startReceiver(answer: (n: number, received: Received) => number = () => 200) {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const entry = {
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        at: performance.now(),
      };
      received.push(entry);
      const status = answer(received.length, entry);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ n: received.length }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Polls `check` until it returns true, at most `timeoutMs` of wall time (for real-clock tests only). */
export async function until(
  check: () => boolean,
  timeoutMs = 60_000,
  what = "condition",
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export const dominant = { strategy: "dominant", on_miss: "error" } as const;

export function reportBody(mediaId: string, extra: Record<string, unknown> = {}) {
  return { media: { mediaId }, output: { template: "general_report" }, target: dominant, ...extra };
}
