// Vitest global setup: the tests need a real PostgreSQL. Ask it once, and stop the run with one
// clear message when nothing answers, instead of every test failing on its own connection.
// (A throw here would also work, but Vitest then prints "No test files found" first.)
import pg from "pg";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** Why the tests cannot run, or `undefined` when PostgreSQL answers `select 1`. */
async function problem(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query("select 1");
    return undefined;
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const url = new URL(DATABASE_URL);
    return (
      `The @mappa-webhooks/postgres tests need PostgreSQL, and ${url.host}${url.pathname} does not answer (${reason}).\n` +
      "Start the local cluster with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`\n" +
      "(user postgres with trust auth on 127.0.0.1, database test), or set DATABASE_URL to yours."
    );
  } finally {
    await client.end().catch(() => {});
  }
}

export default async function postgresAvailable(): Promise<void> {
  const message = await problem();
  if (message === undefined) return;
  process.stderr.write(`\n${message}\n\n`);
  process.exit(1);
}
