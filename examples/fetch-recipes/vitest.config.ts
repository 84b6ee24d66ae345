import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("fetch-recipes");
