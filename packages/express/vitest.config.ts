import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("express", {
  typecheck: { enabled: true, include: ["test/**/*.test-d.ts"], tsconfig: "./tsconfig.json" },
});
