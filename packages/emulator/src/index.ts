export { type ClockMode, EmulatorClock } from "./clock.js";
export {
  type MappaEmulator,
  type MappaEmulatorOptions,
  startMappaEmulator,
} from "./emulator.js";
export {
  DEFAULT_MATCHING_LATENCY_MS,
  DEFAULT_REPORT_LATENCY_MS,
  RUNNING_STAGES,
} from "./state.js";
export type {
  Entity,
  Job,
  JobError,
  JobOutcome,
  JobPlan,
  JobStage,
  JobStatus,
  Matching,
  MatchingSource,
  MediaFile,
  Report,
  ReportJsonV2,
  ReportSection,
  TargetSelector,
  WebhookAttempt,
  WebhookDelivery,
  WebhookFaults,
  WebhookShape,
} from "./types.js";
export {
  buildEventBody,
  DEFAULT_WEBHOOK_TIMEOUT_MS,
  MAPPA_RETRY_SCHEDULE_MS,
  signatureHeaderFor,
} from "./webhooks.js";
