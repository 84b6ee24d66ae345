// The shared test infrastructure of the workspace: one child-process harness, one free-port
// helper, one bounded wait, the stores' test kit (fixture processes, signed deliveries, an HTTP
// receiver, the crash set-up) and their one soak driver. Test files import it as
// `@mappa-webhooks/tooling/test-helpers`.
export { closeServer, freePort, listenOnLoopback } from "./net.js";
export {
  type Child,
  type ProcessResult,
  runProcess,
  type StartProcessOptions,
  startProcess,
} from "./process.js";
export {
  expectSoakExactlyOnce,
  runSoakDeliveries,
  runStoreSoak,
  type SoakAttempt,
  type SoakDeliveriesOptions,
  type SoakPlan,
  type StoreSoakOptions,
  type StoreSoakResult,
  soakPlanFor,
} from "./soak.js";
export {
  type CoreWebhooks,
  type CrashAfterEffectOptions,
  coreListener,
  crashAfterEffect,
  type FixtureStarterOptions,
  fixtureStarter,
  idempotencyKeyOf,
  type RunningReceiver,
  type SignedDeliver,
  type SignPayload,
  type StartFixture,
  type StoreTestKitOptions,
  serveReceiver,
  signedDeliver,
  storeTestKit,
  WEBHOOK_PATH,
  webhookUrlOf,
} from "./store.js";
export { sleep, waitFor } from "./wait.js";
