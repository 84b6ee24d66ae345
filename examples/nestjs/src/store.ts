import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createSqliteIdempotencyStore, type SqliteIdempotencyStore } from "@mappa-webhooks/sqlite";

/** The module's `idempotency` option (none: the core's memory store) and how to close it. */
export interface ChosenStore {
  idempotency?: SqliteIdempotencyStore;
  close?: () => Promise<void>;
}

// Handled events are remembered in an SQLite file in this example's folder (SQLITE_FILE moves
// it), so a restart keeps the dedup; MAPPA_STORE=memory keeps them in memory (a restart forgets
// them). One line at start says which one is used.
export async function idempotencyStore(): Promise<ChosenStore> {
  if (process.env.MAPPA_STORE === "memory") {
    console.log("store: memory (MAPPA_STORE=memory): a restart forgets handled events");
    return {};
  }
  const file = process.env.SQLITE_FILE
    ? resolve(process.env.SQLITE_FILE)
    : fileURLToPath(new URL("../mappa-webhooks.db", import.meta.url));
  const idempotency = createSqliteIdempotencyStore({ database: file });
  try {
    const { driver } = await idempotency.ready();
    console.log(`store: SQLite ${file} (${driver}): a restart keeps the dedup`);
    return { idempotency, close: () => idempotency.close() };
  } catch (error) {
    // Never a crash for want of SQLite: the core's memory store works everywhere.
    console.log(`store: memory, a restart forgets handled events: ${sqliteProblem(error)}`);
    return {};
  }
}

/** Why SQLite did not open, in one line, with the fix. */
function sqliteProblem(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (/bindings file|could not be loaded|not available here|NODE_MODULE_VERSION/.test(message)) {
    return "no SQLite driver here (Node 22.13+ and 24 have node:sqlite; on Node 20 install better-sqlite3 12: npm install better-sqlite3)";
  }
  return message.split("\n")[0] ?? message;
}
