import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";

describeExampleApp(
  "examples/koa",
  fileURLToPath(new URL("../../../examples/koa", import.meta.url)),
);
