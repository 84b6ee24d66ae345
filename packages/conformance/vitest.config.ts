import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

// The real-clock runs of the store contract wait out real leases (each test sets its own
// timeout from the contract's bounds).
export default packageTestConfig("conformance", { include: ["test/**/*.test.ts"] });
