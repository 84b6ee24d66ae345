import type { MatchingSource, TargetSelector } from "./types.js";

/** One problem with a request body: where and what. */
export interface Issue {
  path: string;
  message: string;
}

export type Json = Record<string, unknown>;

export const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const STRATEGIES = new Set(["dominant", "timerange", "entity_id", "magic_hint", "speaker_index"]);

function text(
  issues: Issue[],
  path: string,
  value: unknown,
  { min, max, optional }: { min: number; max: number; optional: boolean },
): string | undefined {
  if (value === undefined && optional) return undefined;
  if (typeof value !== "string" || value.length < min || value.length > max) {
    issues.push({ path, message: `must be a string of ${min} to ${max} characters` });
    return undefined;
  }
  return value;
}

/** A label or entityLabel: optional, 1 to 64 characters. */
export function optionalLabel(issues: Issue[], path: string, value: unknown): string | undefined {
  return text(issues, path, value, { min: 1, max: 64, optional: true });
}

/** A target selector in its wire form (snake_case), as section 6 of mappa-api.md gives it. */
export function targetSelector(
  issues: Issue[],
  path: string,
  value: unknown,
): TargetSelector | undefined {
  if (!isObject(value)) {
    issues.push({
      path,
      message: 'must be an object such as {"strategy":"dominant","on_miss":"error"}',
    });
    return undefined;
  }
  const strategy = value.strategy;
  if (typeof strategy !== "string" || !STRATEGIES.has(strategy)) {
    issues.push({
      path: `${path}.strategy`,
      message: "must be one of dominant, timerange, entity_id, magic_hint, speaker_index",
    });
    return undefined;
  }
  const onMiss = value.on_miss;
  if (onMiss !== "fallback_dominant" && onMiss !== "error") {
    issues.push({ path: `${path}.on_miss`, message: 'must be "fallback_dominant" or "error"' });
  }
  const selector: TargetSelector = {
    strategy: strategy as TargetSelector["strategy"],
    on_miss: onMiss === "fallback_dominant" ? "fallback_dominant" : "error",
  };
  switch (strategy) {
    case "timerange": {
      const range = value.timerange;
      const bound = (v: unknown) =>
        v === null || v === undefined || (typeof v === "number" && Number.isFinite(v) && v >= 0);
      if (!isObject(range) || !bound(range.start_seconds) || !bound(range.end_seconds)) {
        issues.push({
          path: `${path}.timerange`,
          message: "must be {start_seconds, end_seconds} (numbers >= 0 or null)",
        });
        break;
      }
      const start = (range.start_seconds ?? null) as number | null;
      const end = (range.end_seconds ?? null) as number | null;
      if (start === null && end === null) {
        issues.push({
          path: `${path}.timerange`,
          message: "needs at least one of start_seconds and end_seconds",
        });
      } else if (start !== null && end !== null && start >= end) {
        issues.push({
          path: `${path}.timerange`,
          message: "start_seconds must be less than end_seconds",
        });
      }
      selector.timerange = { start_seconds: start, end_seconds: end };
      break;
    }
    case "entity_id": {
      const id = text(issues, `${path}.entity_id`, value.entity_id, {
        min: 1,
        max: 256,
        optional: false,
      });
      if (id !== undefined) selector.entity_id = id;
      break;
    }
    case "magic_hint": {
      const hint = text(issues, `${path}.hint`, value.hint, { min: 1, max: 1024, optional: false });
      if (hint !== undefined) selector.hint = hint;
      break;
    }
    case "speaker_index": {
      const index = value.speaker_index;
      if (typeof index !== "number" || !Number.isInteger(index) || index < 0) {
        issues.push({ path: `${path}.speaker_index`, message: "must be an integer >= 0" });
      } else selector.speaker_index = index;
      break;
    }
  }
  return selector;
}

/** A webhook request: `{url, headers?}` with an http(s) url and string headers. */
export function webhookSpec(
  issues: Issue[],
  value: unknown,
): { url: string; headers: Record<string, string> } | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || typeof value.url !== "string") {
    issues.push({ path: "webhook", message: 'must be {"url": "https://…", "headers"?: {…}}' });
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value.url);
  } catch {
    issues.push({ path: "webhook.url", message: "must be an absolute http(s) URL" });
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    issues.push({ path: "webhook.url", message: "must be an absolute http(s) URL" });
    return undefined;
  }
  const headers: Record<string, string> = {};
  if (value.headers !== undefined) {
    if (
      !isObject(value.headers) ||
      !Object.values(value.headers).every((v) => typeof v === "string")
    ) {
      issues.push({ path: "webhook.headers", message: "must be an object of string values" });
    } else {
      for (const [name, v] of Object.entries(value.headers)) {
        if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n]/.test(v as string)) {
          issues.push({ path: `webhook.headers.${name}`, message: "is not a valid HTTP header" });
        } else headers[name.toLowerCase()] = v as string;
      }
    }
  }
  return { url: url.href, headers };
}

/** A matching source (`entity_id` or `media_target`). */
export function matchingSource(
  issues: Issue[],
  path: string,
  value: unknown,
): MatchingSource | undefined {
  if (!isObject(value)) {
    issues.push({
      path,
      message:
        'must be {"type":"entity_id","entityId"} or {"type":"media_target","mediaId","selector"}',
    });
    return undefined;
  }
  if (value.type === "entity_id") {
    const id = text(issues, `${path}.entityId`, value.entityId, {
      min: 1,
      max: 256,
      optional: false,
    });
    return id === undefined ? undefined : { type: "entity_id", entityId: id };
  }
  if (value.type === "media_target") {
    const mediaId = text(issues, `${path}.mediaId`, value.mediaId, {
      min: 1,
      max: 256,
      optional: false,
    });
    const selector = targetSelector(issues, `${path}.selector`, value.selector);
    return mediaId === undefined || selector === undefined
      ? undefined
      : { type: "media_target", mediaId, selector };
  }
  issues.push({ path: `${path}.type`, message: 'must be "entity_id" or "media_target"' });
  return undefined;
}

/** An integer query parameter within bounds (or its default). */
export function intParam(
  issues: Issue[],
  name: string,
  value: string | null,
  { min, max, fallback }: { min: number; max: number; fallback: number },
): number {
  if (value === null) return fallback;
  const number = Number(value);
  if (value.trim() === "" || !Number.isInteger(number) || number < min || number > max) {
    issues.push({ path: name, message: `must be an integer from ${min} to ${max}` });
    return fallback;
  }
  return number;
}
