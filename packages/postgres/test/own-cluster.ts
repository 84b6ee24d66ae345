// A PostgreSQL cluster of the test's own (initdb + pg_ctl in a temp dir, on a free port), so a
// test can restart Postgres without touching the shared server. Run as the postgres user when
// the tests run as root (initdb refuses root).
import { execFile } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

export interface OwnCluster {
  url: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startOwnCluster(): Promise<OwnCluster> {
  const dir = mkdtempSync(join(tmpdir(), "mappa-pg-"));
  const asRoot = process.getuid?.() === 0;
  const { stdout: ids } = asRoot
    ? await run("id", ["-u", "postgres"]).then(async (uid) => ({
        stdout: `${uid.stdout.trim()}:${(await run("id", ["-g", "postgres"])).stdout.trim()}`,
      }))
    : { stdout: "" };
  if (asRoot) {
    const [uid, gid] = ids.split(":").map(Number);
    chownSync(dir, uid as number, gid as number);
  }
  const pg = (tool: string, args: string[]) =>
    asRoot
      ? run("runuser", ["-u", "postgres", "--", join(BIN, tool), ...args], { timeout: 120_000 })
      : run(join(BIN, tool), args, { timeout: 120_000 });
  const data = join(dir, "data");
  await pg("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  await pg("pg_ctl", [
    "-D",
    data,
    "-o",
    options,
    "-l",
    join(dir, "log"),
    "-w",
    "-t",
    "60",
    "start",
  ]);
  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart() {
      await pg("pg_ctl", [
        "-D",
        data,
        "-m",
        "fast",
        "-w",
        "-t",
        "60",
        "-l",
        join(dir, "log"),
        "-o",
        options,
        "restart",
      ]);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await pg("pg_ctl", ["-D", data, "-m", "immediate", "-w", "-t", "60", "stop"]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
