// The shared test infrastructure of the workspace: one child-process harness, one free-port
// helper, one bounded wait. Test files import it as `@mappa-webhooks/tooling/test-helpers`.
export { closeServer, freePort, listenOnLoopback } from "./net.js";
export {
  type Child,
  type ProcessResult,
  runProcess,
  type StartProcessOptions,
  startProcess,
} from "./process.js";
export {
  runSoakDeliveries,
  type SoakDeliveriesOptions,
  type SoakPlan,
  soakPlanFor,
} from "./soak.js";
export { sleep, waitFor } from "./wait.js";
