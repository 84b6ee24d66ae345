import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";
import { afterAll } from "vitest";
import { createPool, uniqueSchema } from "./helpers.js";

// The checks every example passes, on examples/postgres-inbox, in a schema of its own.
const schema = uniqueSchema("example_contract");
process.env.MAPPA_SCHEMA = schema;

afterAll(async () => {
  const pool = createPool({ max: 1 });
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

describeExampleApp(
  "examples/postgres-inbox",
  fileURLToPath(new URL("../../../examples/postgres-inbox", import.meta.url)),
);
