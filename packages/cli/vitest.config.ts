import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

// The tests spawn the built CLI (dist/) and real servers: give them room on a 2-core machine.
export default packageTestConfig("cli", { testTimeout: 60_000 });
