-- @mappa-webhooks/postgres schema (version 2). migrate() runs exactly this, with your names.
-- Every statement is idempotent. Needs PostgreSQL 11 or later.

CREATE SCHEMA IF NOT EXISTS "mappa_webhooks";

-- One row per event: the inbox (pending -> done, or failed after the last attempt) and the
-- done marks of transactional handlers, committed together with the handlers' writes.
CREATE TABLE IF NOT EXISTS "mappa_webhooks"."events" (
  key text PRIMARY KEY,
  event_id text,
  type text NOT NULL,
  payload json NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  run_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  received_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS "events_pending_idx" ON "mappa_webhooks"."events" (run_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS "events_done_idx" ON "mappa_webhooks"."events" (done_at) WHERE status = 'done';
CREATE INDEX IF NOT EXISTS "events_failed_idx" ON "mappa_webhooks"."events" (updated_at) WHERE status = 'failed';
-- The trace context (W3C traceparent, ...) of the delivery that stored the event, so the
-- worker's span links to it (schema 2; added to the events table of a schema 1).
ALTER TABLE "mappa_webhooks"."events" ADD COLUMN IF NOT EXISTS trace_context jsonb;

-- The shared idempotency store: one row per event key, a claim (lease) or a completed mark.
CREATE TABLE IF NOT EXISTS "mappa_webhooks"."idempotency" (
  key text PRIMARY KEY,
  token text NOT NULL,
  completed boolean NOT NULL DEFAULT false,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS "idempotency_expires_idx" ON "mappa_webhooks"."idempotency" (expires_at);

-- The jobs createMappaRecovery tracks: created, their outcome not handled yet (schema 2).
-- Listed in job id order, byte by byte (COLLATE "C"), whatever the database's collation.
CREATE TABLE IF NOT EXISTS "mappa_webhooks"."tracked_jobs" (
  job_id text COLLATE "C" PRIMARY KEY,
  tracked_at timestamptz NOT NULL
);

-- The schema version, read by migrate() (which also checks the tables' columns).
COMMENT ON TABLE "mappa_webhooks"."events" IS '@mappa-webhooks/postgres schema 2';
