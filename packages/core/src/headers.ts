/**
 * Request headers as frameworks hand them over: a Fetch `Headers`, or a plain object with
 * header names in any case and string or string[] values (Node's `IncomingHttpHeaders`).
 */
export type HeadersInput =
  | Headers
  | { get(name: string): string | null }
  | Readonly<Record<string, string | readonly string[] | number | undefined>>;

/** Reads one header by lower-case name; the first value when several were sent. */
export function readHeader(
  headers: HeadersInput | null | undefined,
  name: string,
): string | undefined {
  if (headers == null || typeof headers !== "object") return undefined;
  if (typeof (headers as { get?: unknown }).get === "function") {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const record = headers as Record<string, unknown>;
  // Node lower-cases names, so the direct hit is the common case.
  let value = Object.hasOwn(record, name) ? record[name] : undefined;
  if (value === undefined) {
    for (const key of Object.keys(record)) {
      if (key.length === name.length && key.toLowerCase() === name) {
        value = record[key];
        break;
      }
    }
  }
  if (Array.isArray(value)) value = value[0];
  if (typeof value === "number") return String(value);
  return typeof value === "string" ? value : undefined;
}
