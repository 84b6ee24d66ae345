export {
  bodyTimeout,
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_MAX_BODY_BYTES,
  payloadTooLarge,
  type ReadBodyOptions,
  readBodyWithLimit,
  requestAborted,
} from "./body.js";
export { constructEvent } from "./construct.js";
export {
  isMappaWebhookError,
  MappaWebhookError,
  type MappaWebhookErrorCode,
  type MappaWebhookErrorOptions,
  statusForCode,
} from "./errors.js";
export {
  idempotencyKeyFor,
  jobOutcomeKey,
  MAPPA_EVENT_TYPES,
  type MappaCompletedStatus,
  type MappaEvent,
  type MappaEventDataMap,
  type MappaEventType,
  type MappaFailedStatus,
  type MappaJobError,
  type MappaKnownEvent,
  type MappaUnknownEvent,
  type MatchingCompletedData,
  type MatchingCompletedEvent,
  type MatchingFailedData,
  type MatchingFailedEvent,
  parseEvent,
  type ReportCompletedData,
  type ReportCompletedEvent,
  type ReportFailedData,
  type ReportFailedEvent,
} from "./events.js";
export { type HeadersInput, readHeader } from "./headers.js";
export type { RawBody } from "./hmac/types.js";
export {
  type ClaimOptions,
  type ClaimResult,
  createMemoryIdempotencyStore,
  DEFAULT_COMPLETED_TTL_MS,
  DEFAULT_LEASE_MS,
  type IdempotencyStore,
  type MemoryIdempotencyStoreOptions,
} from "./idempotency.js";
export {
  MAPPA_DELIVERY_CHANNEL,
  type MappaBacklog,
  type MappaBacklogSource,
  type MappaDeliveryEnd,
  type MappaDeliveryMessage,
  type MappaDeliveryOutcome,
  type MappaDeliveryScope,
  type MappaDeliveryStart,
  type MappaDeliveryStep,
  type MappaInstrumentation,
  type MappaProcessEnd,
  type MappaProcessScope,
  type MappaProcessStart,
  type MappaStepScope,
  type MappaTraceCarrier,
  ProcessTrace,
  startProcessTrace,
} from "./instrumentation.js";
export { createLogWriter, type MappaLogger, type MappaLogLevel } from "./log.js";
export {
  createMappaWebhooks,
  type MappaAnyHandler,
  type MappaErrorInfo,
  type MappaErrorPhase,
  type MappaEventHandler,
  type MappaHandlerMap,
  type MappaWebhooks,
  type MappaWebhooksOptions,
  type WebhookRequestInput,
  type WebhookResponse,
} from "./pipeline.js";
export {
  createMappaRecovery,
  DEFAULT_MAPPA_API_URL,
  DEFAULT_RECOVERY_BATCH,
  DEFAULT_RECOVERY_GRACE_MS,
  DEFAULT_STUCK_AFTER_MS,
  type MappaJob,
  type MappaRecovery,
  type MappaRecoveryJobResult,
  type MappaRecoveryOptions,
  type MappaRecoveryOutcome,
  type MappaRecoveryReport,
} from "./recovery.js";
export {
  createRecoveryEndpoint,
  type RecoveryEndpointOptions,
  type RecoveryEndpointRequest,
  type RecoveryEndpointResponse,
  recoveryReportJson,
} from "./recovery-endpoint.js";
export {
  isJobTrackingStore,
  type JobTrackingStore,
  type TrackedJob,
} from "./recovery-store.js";
export {
  type ClockInput,
  DEFAULT_SIGNATURE_HEADERS,
  DEFAULT_TOLERANCE_SEC,
  MAX_SIGNATURE_HEADER_LENGTH,
  MAX_SIGNATURES_COMPARED,
  type ParsedSignatureHeader,
  parseSignatureHeader,
  type SecretInput,
  type SignPayloadParams,
  signPayload,
  type VerifySignatureParams,
  type VerifySignatureResult,
  verifySignature,
} from "./verify.js";

import { hmacEngine } from "./hmac/engine.js";
/** Which HMAC implementation this build uses: `"node"` (node:crypto) or `"web"` (Web Crypto). */
export const cryptoRuntime: "node" | "web" = hmacEngine.name;
