// A TCP proxy in front of the real PostgreSQL that can end chosen connections the way Postgres
// does when `pg_terminate_backend` or a shutdown hits a backend right after its start-up: the
// FATAL ErrorResponse (57P01) arrives in the same packet as the first ReadyForQuery. Everything
// else is forwarded byte for byte.
import net from "node:net";

export interface FatalProxy {
  /** A connection string through the proxy. */
  url: string;
  /** The next `count` connections get the FATAL right after their first ReadyForQuery. */
  injectNext(count: number): void;
  /** Connections ended with the FATAL so far. */
  readonly injected: number;
  close(): Promise<void>;
}

/** ErrorResponse: severity FATAL, SQLSTATE 57P01, Postgres' own message. */
function fatalMessage(): Buffer {
  const fields = Buffer.from(
    "SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0",
    "latin1",
  );
  const header = Buffer.alloc(5);
  header.write("E", 0, "latin1");
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
}

export async function startFatalProxy(target: URL): Promise<FatalProxy> {
  let pending = 0;
  let injected = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const inject = pending > 0;
    if (inject) pending--;
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    if (!inject) {
      upstream.pipe(client);
      return;
    }
    // Parse the server's messages until the first ReadyForQuery ('Z').
    let buffered = Buffer.alloc(0);
    upstream.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      let offset = 0;
      while (buffered.length - offset >= 5) {
        const type = String.fromCharCode(buffered[offset] as number);
        const length = buffered.readInt32BE(offset + 1);
        if (buffered.length - offset < 1 + length) break;
        offset += 1 + length;
        if (type === "Z") {
          injected++;
          // One write: ReadyForQuery and the FATAL reach the client together.
          client.write(Buffer.concat([buffered.subarray(0, offset), fatalMessage()]), () => end());
          upstream.removeAllListeners("data");
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(target.href);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.href,
    injectNext(count) {
      pending += count;
    },
    get injected() {
      return injected;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
