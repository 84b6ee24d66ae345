// `pnpm start`: serves the production build (`pnpm build` first) on PORT (default 3000, 0 picks
// a free port) and HOST (default 127.0.0.1), and prints one line once it is ready.
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import next from "next";

const hostname = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT ?? 3000);

const app = next({ dev: false, dir: fileURLToPath(new URL(".", import.meta.url)), hostname, port });
await app.prepare();
const handle = app.getRequestHandler();

const server = createServer((req, res) => handle(req, res));
server.listen(port, hostname, () => {
  const address = server.address();
  const actualPort = typeof address === "object" && address !== null ? address.port : port;
  console.log(`listening on http://${hostname}:${actualPort}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
