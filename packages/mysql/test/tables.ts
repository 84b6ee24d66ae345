import type { TestDatabase } from "./helpers.js";

/** The tables the fixtures write: one effect row per handler run, and first-attempt markers. */
export async function createEffectTables(db: TestDatabase): Promise<void> {
  await db.pool.query(
    "CREATE TABLE effects (id INT AUTO_INCREMENT PRIMARY KEY, event_key VARCHAR(255) NOT NULL, worker VARCHAR(64) NOT NULL) ENGINE=InnoDB",
  );
  await db.pool.query(
    "CREATE TABLE first_attempts (event_key VARCHAR(255) PRIMARY KEY, worker VARCHAR(64) NOT NULL) ENGINE=InnoDB",
  );
}

export async function effectsOf(db: TestDatabase, key: string): Promise<string[]> {
  const [rows] = await db.pool.query("SELECT worker FROM effects WHERE event_key = ? ORDER BY id", [
    key,
  ]);
  return (rows as Array<{ worker: string }>).map((row) => row.worker);
}
