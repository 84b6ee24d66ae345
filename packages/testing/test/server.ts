import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readBodyWithLimit } from "@mappa-webhooks/core";

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface TestServer {
  url: string;
  port: number;
  received: Received[];
  close(): Promise<void>;
}

/** A real loopback server; `answer` decides each response from the request number (0-based). */
export async function startServer(
  answer: (index: number, request: Received) => number | "hang" | Promise<number>,
): Promise<TestServer> {
  const received: Received[] = [];
  const server: Server = createServer(async (req, res) => {
    const body = new TextDecoder().decode(await readBodyWithLimit(req));
    const request = { headers: req.headers, body, at: performance.now() };
    const index = received.push(request) - 1;
    const status = await answer(index, request);
    if (status === "hang") return; // never answers; closed by close()
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ attempt: index + 1 }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on: bound once, then released. */
export { freePort } from "@mappa-webhooks/tooling/test-helpers";
