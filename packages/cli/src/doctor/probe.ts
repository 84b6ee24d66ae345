import { lookup } from "node:dns/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP, connect as netConnect, type Socket } from "node:net";
import { checkServerIdentity, type PeerCertificate, connect as tlsConnect } from "node:tls";

/** Where to connect: the URL's host, unless `--resolve` says which address to use. */
export interface Target {
  url: URL;
  /** The host name without IPv6 brackets. */
  hostname: string;
  port: number;
  /** `--resolve host:port:address` given for this host and port. */
  address?: string;
  /** Extra trusted CA certificates (PEM), besides the system's. */
  ca?: string[];
  timeoutMs: number;
}

export function targetOf(url: URL, timeoutMs: number): Target {
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
  return { url, hostname, port, timeoutMs };
}

/** Host names that only ever mean this machine. */
export function isLoopbackName(hostname: string): boolean {
  return (
    hostname === "localhost" ||
    hostname.endsWith(".localhost") ||
    hostname === "::1" ||
    /^127\.\d+\.\d+\.\d+$/.test(hostname)
  );
}

export type Resolved =
  | { ok: true; address: string; family: number; how: "literal" | "resolve" | "dns" }
  | { ok: false; code: string; reason: string };

const DNS_REASONS: Record<string, string> = {
  ENOTFOUND: "no such host name (check the spelling, and that its DNS record exists)",
  EAI_AGAIN: "the DNS lookup failed for now (no network, or the DNS server did not answer)",
  ENODATA: "the host name has no address record",
};

export async function resolveTarget(target: Target): Promise<Resolved> {
  if (target.address !== undefined) {
    return { ok: true, address: target.address, family: isIP(target.address), how: "resolve" };
  }
  if (isIP(target.hostname) !== 0) {
    return { ok: true, address: target.hostname, family: isIP(target.hostname), how: "literal" };
  }
  try {
    const { address, family } = await lookup(target.hostname);
    return { ok: true, address, family, how: "dns" };
  } catch (error) {
    const code = codeOf(error);
    return { ok: false, code, reason: DNS_REASONS[code] ?? `lookup failed (${code})` };
  }
}

const TCP_REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused: nothing listens on that port",
  ETIMEDOUT: "the connection timed out (a firewall, or the wrong address)",
  TIMEOUT: "the connection timed out (a firewall, or the wrong address)",
  EHOSTUNREACH: "the host is unreachable",
  ENETUNREACH: "the network is unreachable",
  ECONNRESET: "the connection was reset",
};

export function describeNetworkError(code: string, fallback?: string): string {
  return TCP_REASONS[code] ?? DNS_REASONS[code] ?? fallback ?? code;
}

export type Connected =
  | { ok: true; latencyMs: number; socket: Socket }
  | { ok: false; code: string; reason: string };

export function connectTcp(target: Target, address: string): Promise<Connected> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = netConnect({ host: address, port: target.port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, code: "TIMEOUT", reason: describeNetworkError("TIMEOUT") });
    }, target.timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve({ ok: true, latencyMs: Math.round(performance.now() - started), socket });
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      const code = codeOf(error);
      resolve({ ok: false, code, reason: describeNetworkError(code, error.message) });
    });
  });
}

/** What the TLS handshake showed: valid, or the problem in plain words. */
export type TlsResult =
  | {
      ok: true;
      protocol: string;
      subject: string;
      issuer: string;
      validTo: Date;
      daysLeft: number;
    }
  | { ok: false; code: string; reason: string; fix: string; validTo?: Date };

const TLS_PROBLEMS: Record<string, { reason: string; fix: string }> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: {
    reason:
      "the certificate is self-signed: no public authority vouches for it, so Mappa will not trust it",
    fix: "Use a certificate from a public CA (e.g. Let's Encrypt). For a private CA you trust, pass --ca <file>.",
  },
  SELF_SIGNED_CERT_IN_CHAIN: {
    reason: "the certificate chain ends in a self-signed root that is not publicly trusted",
    fix: "Use a certificate from a public CA; for a private CA pass --ca <root.pem> to check the rest.",
  },
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: {
    reason:
      "the certificate's issuer is unknown: the server may not send its intermediate certificates",
    fix: "Serve the full chain (certificate + intermediates, e.g. fullchain.pem), or pass --ca for a private CA.",
  },
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: {
    reason:
      "the certificate's issuer is not trusted: it is not a public CA, or an intermediate is missing",
    fix: "Serve the full chain, or pass --ca <file> if it is your private CA.",
  },
  UNABLE_TO_GET_ISSUER_CERT: {
    reason: "the certificate's issuer could not be found",
    fix: "Serve the full chain (certificate + intermediates).",
  },
  CERT_HAS_EXPIRED: {
    reason: "the certificate has expired",
    fix: "Renew the certificate (and automate renewal).",
  },
  CERT_NOT_YET_VALID: {
    reason:
      "the certificate is not valid yet (its start date is in the future, or a clock is wrong)",
    fix: "Check the server's clock and the certificate's dates.",
  },
  ERR_TLS_CERT_ALTNAME_INVALID: {
    reason: "the certificate is for another host name",
    fix: "Use a certificate whose names include this host (check the URL too).",
  },
  CERT_REVOKED: {
    reason: "the certificate has been revoked",
    fix: "Get a new certificate.",
  },
};

function nameOf(part: PeerCertificate["subject"] | undefined): string {
  if (part === undefined) return "?";
  const cn = part.CN as string | string[] | undefined;
  const o = part.O as string | string[] | undefined;
  return [cn, o].flat().find((value) => typeof value === "string" && value !== "") ?? "?";
}

export function checkTls(target: Target, socket: Socket): Promise<TlsResult> {
  const servername = isIP(target.hostname) === 0 ? target.hostname : undefined;
  return new Promise((resolve) => {
    const tls = tlsConnect({
      socket,
      // The name the certificate is checked against (the socket is already connected).
      host: target.hostname,
      ...(servername === undefined ? {} : { servername }),
      ...(target.ca === undefined ? {} : { ca: target.ca }),
      // Judged below, so the problem can be named instead of only failing.
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      tls.destroy();
      resolve({
        ok: false,
        code: "TIMEOUT",
        reason: "the TLS handshake did not finish in time",
        fix: "Check that the port serves HTTPS.",
      });
    }, target.timeoutMs);
    tls.once("secureConnect", () => {
      clearTimeout(timer);
      const cert = tls.getPeerCertificate();
      const validTo = new Date(cert.valid_to);
      const authError = tls.authorizationError as unknown as Error | string | null;
      let code =
        authError === null || authError === undefined
          ? undefined
          : typeof authError === "string"
            ? authError
            : codeOf(authError);
      if (code === undefined) {
        const identity = checkServerIdentity(target.hostname, cert);
        if (identity !== undefined) code = codeOf(identity);
      }
      tls.end();
      if (code !== undefined) {
        const known = TLS_PROBLEMS[code];
        let reason = known?.reason ?? `the certificate is not valid (${code})`;
        if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
          reason = `${reason}: it names ${(cert.subjectaltname ?? nameOf(cert.subject)).replaceAll("DNS:", "").replaceAll("IP Address:", "")}, not ${target.hostname}`;
        }
        if (code === "CERT_HAS_EXPIRED")
          reason = `${reason} on ${validTo.toISOString().slice(0, 10)}`;
        resolve({
          ok: false,
          code,
          reason,
          fix: known?.fix ?? "Fix the certificate.",
          validTo,
        });
        return;
      }
      resolve({
        ok: true,
        protocol: tls.getProtocol() ?? "TLS",
        subject: nameOf(cert.subject),
        issuer: nameOf(cert.issuer),
        validTo,
        daysLeft: Math.floor((validTo.getTime() - Date.now()) / 86_400_000),
      });
    });
    tls.once("error", (error) => {
      clearTimeout(timer);
      const code = codeOf(error);
      const plain = /wrong version number|packet length too long|unknown protocol/i.test(
        error.message,
      );
      resolve({
        ok: false,
        code,
        reason: plain
          ? "the server does not speak TLS on this port (it looks like plain HTTP)"
          : `the TLS handshake failed: ${error.message}`,
        fix: plain
          ? "Use http:// for this port, or serve HTTPS on it."
          : "Check the server's TLS configuration.",
      });
    });
  });
}

/** One HTTP answer, or the network failure instead. */
export interface ProbeAnswer {
  status?: number;
  latencyMs: number;
  body?: string;
  location?: string;
  code?: string;
  error?: string;
}

/**
 * POSTs `body` with `headers` to the target (through the resolved address), and reads the
 * answer. `target.timeoutMs` bounds the whole request, connect to the answer's last byte: an
 * endpoint that drips bytes or streams forever is cut off then, as one that never answers.
 */
export function post(
  target: Target,
  address: string,
  body: string,
  headers: Record<string, string>,
): Promise<ProbeAnswer> {
  const { url } = target;
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const https = url.protocol === "https:";
  const servername = isIP(target.hostname) === 0 ? target.hostname : undefined;
  return new Promise((resolve) => {
    let settled = false;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const done = (answer: ProbeAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(answer);
    };
    const options = {
      host: address,
      port: target.port,
      path: `${url.pathname}${url.search}`,
      method: "POST",
      agent: false as const,
      headers: {
        host: url.host,
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(body)),
        ...headers,
      },
    };
    const onResponse = (res: import("node:http").IncomingMessage) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        if (text.length < 2_000) text += chunk;
      });
      res.on("end", () =>
        done({
          status: res.statusCode ?? 0,
          latencyMs: elapsed(),
          body: text.slice(0, 2_000),
          ...(typeof res.headers.location === "string" ? { location: res.headers.location } : {}),
        }),
      );
      res.on("error", (error) =>
        done({ latencyMs: elapsed(), code: codeOf(error), error: error.message }),
      );
    };
    const req = https
      ? httpsRequest(
          {
            ...options,
            ...(servername === undefined ? {} : { servername }),
            ...(target.ca === undefined ? {} : { ca: target.ca }),
          },
          onResponse,
        )
      : httpRequest(options, onResponse);
    deadline = setTimeout(() => {
      done({ latencyMs: elapsed(), code: "TIMEOUT", error: "no complete answer in time" });
      req.destroy();
    }, target.timeoutMs);
    req.on("error", (error) => {
      const code = codeOf(error);
      done({ latencyMs: elapsed(), code, error: describeNetworkError(code, error.message) });
    });
    req.end(body);
  });
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "ERROR";
}

/**
 * The same JSON value written the way few serialisers would: keys in reverse order, spaces
 * around `:` and `,`, line breaks, and `\uXXXX` escapes for non-ASCII and `/`. Valid JSON that
 * parses to the same value, but whose bytes a parse-and-stringify round trip does not keep.
 */
export function unusualJson(value: unknown, indent = ""): string {
  const inner = `${indent}   `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[ ]";
    return `[\n${value.map((item) => `${inner}${unusualJson(item, inner)}`).join(" ,\n")}\n${indent}]`;
  }
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).reverse();
    if (entries.length === 0) return "{ }";
    return `{\n${entries
      .map(([key, item]) => `${inner}${escapeString(key)} :  ${unusualJson(item, inner)}`)
      .join(" ,\n")}\n${indent}}`;
  }
  if (typeof value === "string") return escapeString(value);
  return JSON.stringify(value) ?? "null";
}

function escapeString(text: string): string {
  return JSON.stringify(text).replace(
    /[^\x20-\x7e]|\//g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
