import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";

describeExampleApp(
  "examples/fastify",
  fileURLToPath(new URL("../../../examples/fastify", import.meta.url)),
);
