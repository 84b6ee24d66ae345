import { describeAdapterExports, describeConformance } from "@mappa-webhooks/conformance";
import type { MappaNestOptions } from "../src/index.js";
import * as adapterModule from "../src/index.js";
import { appModule, type Platform, startNest } from "./apps.js";

const platforms: Array<{ name: string; platform: Platform }> = [
  { name: "NestJS on Express", platform: "express" },
  { name: "NestJS on Fastify", platform: "fastify" },
];

for (const { name, platform } of platforms) {
  describeConformance(
    name,
    async (options) =>
      // As the README sets it up: the route at the module's default path, no rawBody option.
      startNest({ platform, module: appModule(options as MappaNestOptions), rawBody: false }),
    { ackFirst: false },
  );
}

describeAdapterExports(
  "@mappa-webhooks/nestjs",
  adapterModule,
  new URL("../src/index.ts", import.meta.url),
);
