import { type ParseArgsConfig, parseArgs } from "node:util";

/** Exit codes: 0 success, 1 the thing checked failed (abandoned, not valid), 2 bad input. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A mistake in the command line or its inputs: printed with a pointer to `--help`, exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  constructor(
    message: string,
    /** The command whose `--help` to point to. */
    readonly command?: string,
  ) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** node:util parseArgs, strict, with its errors rewritten as short {@link UsageError}s. */
export function parseCommandArgs<const T extends Options>(
  command: string,
  argv: string[],
  options: T,
  maxPositionals: number,
) {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>
  >;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(describeParseError(error), command);
  }
  if (parsed.positionals.length > maxPositionals) {
    const extra = parsed.positionals.slice(maxPositionals).join(" ");
    throw new UsageError(`unexpected argument: ${extra}`, command);
  }
  return parsed;
}

function describeParseError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const flag = /'(-[^' ]+)/.exec(message)?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${flag ?? message}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(message)) return `${flag ?? "a flag"} needs a value`;
      if (/ambiguous/.test(message)) {
        return `${flag ?? "a flag"} needs a value; for one that starts with "-", write ${flag ?? "--flag"}=<value>`;
      }
      return `${flag ?? "a flag"} does not take a value`;
    default:
      return message;
  }
}

/** The secret(s) from `--secret` (repeatable) or MAPPA_WEBHOOK_SECRET; never printed. */
export function readSecrets(
  command: string,
  flag: string | string[] | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  const given = flag === undefined ? [] : Array.isArray(flag) ? flag : [flag];
  if (given.some((secret) => secret === "")) {
    throw new UsageError("--secret is empty", command);
  }
  if (given.length > 0) return given;
  const fromEnv = env.MAPPA_WEBHOOK_SECRET;
  if (fromEnv !== undefined && fromEnv !== "") return [fromEnv];
  throw new UsageError(
    "no webhook secret: pass --secret <secret> or set MAPPA_WEBHOOK_SECRET",
    command,
  );
}

/** A number flag within bounds, or a {@link UsageError} naming the flag. */
export function readNumber(
  command: string,
  name: string,
  value: string | undefined,
  {
    min,
    max = Number.POSITIVE_INFINITY,
    integer = false,
  }: { min: number; max?: number; integer?: boolean },
): number | undefined {
  if (value === undefined) return undefined;
  const number = value.trim() === "" ? Number.NaN : Number(value);
  const kind = integer ? "a whole number" : "a number";
  if (
    !Number.isFinite(number) ||
    (integer && !Number.isInteger(number)) ||
    number < min ||
    number > max
  ) {
    const range = max === Number.POSITIVE_INFINITY ? `>= ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`--${name} must be ${kind} ${range}, got "${value}"`, command);
  }
  return number;
}

/** How to run the CLI without a global install: the package's real name on npm. */
export const RUN = "npx @mappa-webhooks/cli";

/**
 * An http(s) URL from a flag, the same forms for every command: `http://…` and `https://…`, or
 * a bare `host:port[/path]` (`localhost:3000/webhooks/mappa`, `127.0.0.1:3000`, `[::1]:3000`)
 * taken as `http://`. Anything else (`htp:/bad`, `ftp://…`, `http:/one-slash`, no host) is a
 * {@link UsageError} with an example.
 */
export function readHttpUrl(
  command: string,
  flag: string,
  value: string,
  example = "http://127.0.0.1:3000/webhooks/mappa",
): URL {
  const text = value.trim();
  const bad = (why: string) =>
    new UsageError(`${flag} "${value}" ${why}, e.g. ${example}`, command);
  let href: string;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1]?.toLowerCase();
  if (/^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d+(?:[/?#]|$)/i.test(text)) {
    // host:port with no scheme: `localhost:3000/x` would otherwise read as scheme "localhost:".
    href = `http://${text}`;
  } else if (scheme === "http" || scheme === "https") {
    if (!/^https?:\/\/[^/?#]/i.test(text)) throw bad(`is not a URL: write ${scheme}://<host>…`);
    href = text;
  } else if (scheme !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw bad(`must be http:// or https://, not ${scheme}://`);
  } else if (scheme !== undefined) {
    throw bad("is not an http(s) URL");
  } else {
    throw bad("is not a URL: give http(s)://… or host:port/path");
  }
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    throw bad("is not a URL");
  }
  if (url.hostname === "" || /\s/.test(text)) throw bad("is not a URL");
  return url;
}
