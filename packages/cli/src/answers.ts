/** What the CLI reads from a receiver's JSON answer: its error code, its fix, a duplicate. */
export interface AnswerBody {
  /** `{"error":"<code>"}`: the code a receiver built on @mappa-webhooks answers. */
  error?: string;
  /** `{"fix":"…"}`: how to fix it, when the receiver says. */
  fix?: string;
  /** `{"duplicate":true}`: the receiver already had this event and did not process it again. */
  duplicate: boolean;
}

/** Reads a receiver's answer body; anything that is not a JSON object reads as empty. */
export function readAnswerBody(body: string | undefined): AnswerBody {
  if (body === undefined || body === "") return { duplicate: false };
  try {
    const value = JSON.parse(body) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return { duplicate: false };
    }
    const { error, fix, duplicate } = value as Record<string, unknown>;
    return {
      ...(typeof error === "string" ? { error } : {}),
      ...(typeof fix === "string" && fix !== "" ? { fix } : {}),
      duplicate: duplicate === true,
    };
  } catch {
    return { duplicate: false };
  }
}

/**
 * The fix for the most common set-up mistake: a body parser (`express.json()`, `bodyParser`,
 * `app.use(express.json())` before the route) read the request before the Mappa handler, so the
 * raw bytes the signature covers are gone.
 */
export const BODY_ALREADY_PARSED_FIX =
  "a body parser read the request before the Mappa handler (e.g. app.use(express.json()) registered before the webhook route): mount the Mappa route before any body parser, or exclude its path from the parser, so the handler reads the raw body.";

/** How to fix what an error answer names, in words: the receiver's own `fix` first. */
export function fixFor(answer: AnswerBody): string | undefined {
  if (answer.fix !== undefined) return answer.fix;
  if (answer.error === "body_already_parsed") return BODY_ALREADY_PARSED_FIX;
  return undefined;
}
