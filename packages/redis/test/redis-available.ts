// Vitest global setup: the tests need a real Redis. Ask it once, with one PING over a plain
// socket (no client retries), and stop the run with one clear message when nothing answers,
// instead of every test failing with client retry errors. (A throw here would also work, but
// Vitest then prints "No test files found" and its project list first, which misleads.)
import { connect } from "node:net";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const CONNECT_TIMEOUT_MS = 5000;

/** A Redis command as RESP, so any password or user name is sent safely. */
function command(...parts: string[]): string {
  return `*${parts.length}\r\n${parts.map((part) => `$${Buffer.byteLength(part)}\r\n${part}\r\n`).join("")}`;
}

/** Resolves with Redis' first reply line to `PING` (after `AUTH` when the URL has a password). */
function ping(url: URL): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname || "127.0.0.1", port: Number(url.port || 6379) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`));
    }, CONNECT_TIMEOUT_MS);
    const password = decodeURIComponent(url.password);
    const user = decodeURIComponent(url.username);
    const expected = password === "" ? 1 : 2;
    let received = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      const auth =
        password === ""
          ? ""
          : user === ""
            ? command("AUTH", password)
            : command("AUTH", user, password);
      socket.write(`${auth}${command("PING")}`);
    });
    socket.on("data", (chunk: string) => {
      received += chunk;
      const lines = received.split("\r\n").filter((line) => line !== "");
      if (lines.length < expected) return;
      clearTimeout(timer);
      socket.end();
      resolve(lines.at(-1) as string);
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Why the tests cannot run, or `undefined` when Redis answers PING. */
async function problem(): Promise<string | undefined> {
  const url = new URL(REDIS_URL);
  const shown = `${url.hostname}:${url.port || 6379}`;
  let reply: string;
  try {
    reply = await ping(url);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    return (
      `The @mappa-webhooks/redis tests need a Redis server, and none answers at ${shown} (${reason}).\n` +
      `Start one with \`redis-server --daemonize yes --save ""\` (or \`docker run -d -p 6379:6379 redis:7\`),\n` +
      "or set REDIS_URL to yours (e.g. REDIS_URL=redis://127.0.0.1:6380)."
    );
  }
  if (reply === "+PONG") return undefined;
  return (
    `The @mappa-webhooks/redis tests need a Redis server: ${shown} answered PING with ${JSON.stringify(reply)}.\n` +
    "Check REDIS_URL (a password goes in it: redis://:password@host:port)."
  );
}

export default async function redisAvailable(): Promise<void> {
  const message = await problem();
  if (message === undefined) return;
  process.stderr.write(`\n${message}\n\n`);
  process.exit(1);
}
