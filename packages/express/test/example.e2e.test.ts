import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";

describeExampleApp(
  "examples/express",
  fileURLToPath(new URL("../../../examples/express", import.meta.url)),
);
