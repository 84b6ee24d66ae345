import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback port nothing listens on: bound once on 127.0.0.1, then released. For programs
 * that must be told their port up front; servers in the test process listen on 0 instead.
 *
 * @example
 * ```ts
 * const port = await freePort();
 * const child = startProcess({ args: [script, "--port", String(port)] });
 * ```
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Listens on 127.0.0.1 with an ephemeral port (unless the server listens already) and tells
 * the base URL, with a `close` that drops open connections first so it never waits on keep-alive.
 *
 * @example
 * ```ts
 * const { baseUrl, close } = await listenOnLoopback(createServer(handler));
 * ```
 */
export async function listenOnLoopback(
  server: Server,
): Promise<{ server: Server; port: number; baseUrl: string; close(): Promise<void> }> {
  if (!server.listening) {
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
  }
  const { port } = server.address() as AddressInfo;
  return { server, port, baseUrl: `http://127.0.0.1:${port}`, close: () => closeServer(server) };
}

/**
 * Closes a server: open connections (keep-alive included) are dropped first.
 *
 * @example
 * ```ts
 * afterAll(() => closeServer(server));
 * ```
 */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
