import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";
import { afterAll } from "vitest";

// The example keeps handled events in an SQLite file (when a driver loads): here, one of its own.
const scratch = mkdtempSync(join(tmpdir(), "mappa-nestjs-example-"));
process.env.SQLITE_FILE = join(scratch, "mappa-webhooks.db");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describeExampleApp(
  "examples/nestjs",
  fileURLToPath(new URL("../../../examples/nestjs", import.meta.url)),
);
