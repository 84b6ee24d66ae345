import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";

describeExampleApp(
  "examples/nestjs",
  fileURLToPath(new URL("../../../examples/nestjs", import.meta.url)),
);
