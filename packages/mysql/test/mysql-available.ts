// Vitest global setup: the tests need a real MySQL or MariaDB. Ask it once, and stop the run
// with one clear message when nothing answers, instead of every test failing on its own.
import mysql from "mysql2/promise";

const MYSQL_URL = process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test";

export default async function mysqlAvailable(): Promise<void> {
  try {
    const connection = await mysql.createConnection({ uri: MYSQL_URL, connectTimeout: 5_000 });
    await connection.query("SELECT 1");
    await connection.end();
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const url = new URL(MYSQL_URL);
    process.stderr.write(
      `\nThe @mappa-webhooks/mysql tests need MySQL or MariaDB, and ${url.host}${url.pathname} does not answer (${reason}).\n` +
        "Start the local MariaDB (e.g. `service mariadb start`; root with an empty password, database test), or set MYSQL_URL to yours.\n\n",
    );
    process.exit(1);
  }
}
