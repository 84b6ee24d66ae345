export {
  MAPPA_EVENT_TYPES,
  type MappaEventType,
  type SignPayloadParams,
  signPayload,
} from "@mappa-webhooks/core";
export {
  createEventId,
  createTestEvent,
  type DeepPartial,
  mergeData,
  TEST_EVENT_SHAPES,
  type TestCompletedStatus,
  type TestEvent,
  type TestEventData,
  type TestEventOptions,
  type TestEventOverrides,
  type TestEventShape,
  type UnknownEventData,
} from "./events.js";
export {
  createSignedDelivery,
  createSignedRequest,
  type DeliveryPayload,
  type SignedDelivery,
  type SignOptions,
} from "./sign.js";
export {
  createDeliverySimulator,
  DEFAULT_ATTEMPT_TIMEOUT_MS,
  type DeliveryAttempt,
  type DeliveryReport,
  type DeliverySimulator,
  MAPPA_RETRY_SCHEDULE_MS,
  type SimulateDeliveryOptions,
  simulateDelivery,
} from "./simulator.js";
