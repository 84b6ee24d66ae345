// What a new user meets first, checked without installing anything: commands that work as
// written, one version line, a quick start in every package README, and the signature scheme as
// the core's README words it.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import {
  COMMAND_LINE_PACKAGES,
  codeBlocks,
  documents,
  importedPackages,
  installedPackages,
  publishedPackages,
  quickstartSection,
  readmeOf,
  root,
} from "./readmes.js";

// `npx mappa-webhooks` (or `npx mappa-webhooks-postgres`) runs the unscoped package of that name
// from the registry, which is not ours. The working forms name the scoped package:
// `npx @mappa-webhooks/cli …` or `npx -p @mappa-webhooks/<pkg> <bin> …`.
const UNSCOPED_RUN =
  /\b(?:npx(?:\s+(?:-y|--yes))?|pnpm\s+dlx|yarn\s+dlx|bunx)\s+mappa-webhooks(?:-[a-z]+)*(?![\w/-])/g;

describe("commands in the docs", () => {
  it("finds the bad form where it is (the check itself)", () => {
    const found = (text: string) => [...text.matchAll(UNSCOPED_RUN)].map((m) => m[0]);
    expect(found("npx mappa-webhooks listen")).toEqual(["npx mappa-webhooks"]);
    expect(found("run `npx -y mappa-webhooks-postgres replay`")).toEqual([
      "npx -y mappa-webhooks-postgres",
    ]);
    expect(found("pnpm dlx mappa-webhooks trigger")).toEqual(["pnpm dlx mappa-webhooks"]);
    expect(found("npx @mappa-webhooks/cli listen")).toEqual([]);
    expect(found("npx -p @mappa-webhooks/postgres mappa-webhooks-postgres replay")).toEqual([]);
  });

  it.each(documents())("%s runs the CLIs by their scoped package names", (path) => {
    const text = readmeOf(path);
    const bad = text
      .split("\n")
      .map((line, i) => ({ line: i + 1, text: line.trim() }))
      .filter(({ text: line }) => new RegExp(UNSCOPED_RUN.source).test(line));
    expect(
      bad,
      "use `npx @mappa-webhooks/cli …` or `npx -p @mappa-webhooks/<pkg> <bin> …`",
    ).toEqual([]);
  });
});

describe("versions", () => {
  it("every published package is on one version line", () => {
    const versions = Object.fromEntries(publishedPackages().map((p) => [p.name, p.version]));
    const core = versions["@mappa-webhooks/core"];
    expect(core).toMatch(/^\d+\.\d+\.\d+$/);
    expect(
      Object.entries(versions).filter(([, version]) => version !== core),
      `every package.json "version" equals the core's (${core}); the changesets "fixed" group keeps them together`,
    ).toEqual([]);
  });

  it("the changesets config keeps every published package in one fixed group", () => {
    const config = JSON.parse(readFileSync(join(root, ".changeset/config.json"), "utf8")) as {
      fixed: string[][];
    };
    expect(config.fixed).toEqual([["@mappa-webhooks/*"]]);
  });
});

describe("package READMEs", () => {
  const packages = publishedPackages().filter((p) => !COMMAND_LINE_PACKAGES.has(p.name));

  it.each(packages.map((p) => [p.name, p]))(
    "%s: the quick start is a marked, complete file whose imports the install lines name",
    (_name, pkg) => {
      const path = `${pkg.dir.slice(root.length + 1)}/README.md`;
      const text = readmeOf(path);
      expect(text.startsWith(`# ${pkg.name}\n`), "the README starts with the package's name").toBe(
        true,
      );
      const section = quickstartSection(text);
      expect(
        section,
        'a "## Quick start" section whose first code block is the quick start',
      ).toBeDefined();
      expect(
        section?.marker,
        "`<!-- quickstart -->` (or `quickstart next|lambda|client|worker`) on the line before its fence",
      ).toMatch(/^quickstart(\s+(next|lambda|client|worker))?$/);
      expect(section?.lang).toBe("ts");
      const block = codeBlocks(text).find((b) => b.marker === section?.marker) as {
        code: string;
      };
      const installs = installedPackages(text);
      expect(installs, "an `npm install` line").toContain(pkg.name);
      expect(
        importedPackages(block.code).filter((name) => !installs.includes(name)),
        "every package the quick start imports is on an `npm install` line",
      ).toEqual([]);
      // A Worker's secret is a binding (`c.env`); its quick start runs in workerd, in the
      // package's own test (packages/cloudflare/test/readme.test.ts), not on Node here.
      expect(block.code, "takes the secret from the environment").toContain(
        section?.marker === "quickstart worker"
          ? "c.env.MAPPA_WEBHOOK_SECRET"
          : "process.env.MAPPA_WEBHOOK_SECRET",
      );
    },
  );
});

// The core README's "signature scheme" section, followed to the letter: its words name the
// headers, the format, the signed text, the HMAC and the tolerance, and its code, run as written,
// agrees with every shared vector.
describe("the signature scheme in the core README", () => {
  const readme = readmeOf("packages/core/README.md");
  const start = readme.indexOf("## The signature scheme");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));

  it("says what is signed, how, and for how long", () => {
    expect(start).toBeGreaterThan(0);
    for (const words of [
      "`conduit-signature`",
      "`mappa-signature`",
      "`t=<unix>,v1=<hex>`",
      'The signed text is `"<t>." + raw body`',
      "HMAC-SHA256",
      "keyed with the secret's UTF-8 bytes",
      "lowercase hex",
      "within 300 seconds",
      "in the past or the future",
    ]) {
      expect(section.replace(/\s+/g, " ")).toContain(words);
    }
  });

  it("its code, run as written, agrees with every shared signature vector", async () => {
    const code = codeBlocks(section).find((b) => b.lang === "ts")?.code ?? "";
    expect(code).toContain('createHmac("sha256"');
    const dir = join(root, "packages/quickstarts/node_modules/.cache");
    const { mkdirSync, writeFileSync } = await import("node:fs");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, "readme-verify.ts");
    writeFileSync(file, code);
    const { verify } = (await import(file)) as {
      verify: (
        header: string,
        body: Buffer,
        secret: string,
        now?: number,
        toleranceSec?: number,
      ) => boolean;
    };
    const vectors = JSON.parse(
      readFileSync(join(root, "packages/core/test/fixtures/signature.json"), "utf8"), // the shared vectors
    ) as {
      now: number;
      secret: string;
      toleranceSec: number;
      cases: {
        name: string;
        bodyBase64: string;
        headers?: Record<string, string | string[]>;
        secrets?: string[];
        toleranceSec?: number;
        now?: number;
        expect: string;
      }[];
    };
    const outcomes = vectors.cases.map((c) => {
      // "The header is `conduit-signature` … or `mappa-signature`" (names in any case).
      const entry = Object.entries(c.headers ?? {}).find(([name]) =>
        ["conduit-signature", "mappa-signature"].includes(name.toLowerCase()),
      );
      const value = Array.isArray(entry?.[1]) ? entry[1][0] : entry?.[1];
      const secrets = c.secrets ?? [vectors.secret];
      const ok =
        value !== undefined &&
        value.trim() !== "" &&
        secrets.some((secret) =>
          verify(
            value,
            Buffer.from(c.bodyBase64, "base64"),
            secret,
            c.now ?? vectors.now,
            c.toleranceSec ?? vectors.toleranceSec,
          ),
        );
      return { name: c.name, ok };
    });
    expect(outcomes.length).toBeGreaterThan(30);
    expect(outcomes).toEqual(vectors.cases.map((c) => ({ name: c.name, ok: c.expect === "ok" })));
  });
});

// `pnpm demo`'s first screen: turbo's progress, without its telemetry banner (shown once per
// machine unless TURBO_TELEMETRY_DISABLED is set, so the script sets it itself) or cache hashes.
describe("the demo's first screen", () => {
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    scripts: Record<string, string>;
  };
  const build = manifest.scripts.demo?.split(" && ")[0] ?? "";

  it("builds with the telemetry banner off and only errors' logs", () => {
    expect(build).toMatch(/^TURBO_TELEMETRY_DISABLED=1 turbo run build /);
    expect(build).toContain("--output-logs=errors-only");
  });

  it("shows progress, and no banner or hash, on a machine that never ran turbo", async () => {
    // A fresh turbo config dir is a machine that has not seen the banner; the environment is
    // the user's, without the telemetry variable this repository's tools export.
    const config = mkdtempSync(join(tmpdir(), "mappa-demo-turbo-"));
    const env: NodeJS.ProcessEnv = { ...process.env, TURBO_CONFIG_DIR_PATH: config };
    delete env.TURBO_TELEMETRY_DISABLED;
    delete env.DO_NOT_TRACK;
    try {
      const { stdout, stderr } = await promisify(execFile)("sh", ["-c", build], {
        cwd: root,
        env: { ...env, PATH: `${join(root, "node_modules/.bin")}:${env.PATH ?? ""}` },
        maxBuffer: 16 * 1024 * 1024,
      });
      const screen = `${stdout}${stderr}`;
      expect(screen).toMatch(/Tasks:\s+\d+ successful/);
      // Turbo's first-run notice ("Attention: Turborepo now collects completely anonymous
      // telemetry…"); the package list itself names @mappa-webhooks/opentelemetry.
      expect(screen).not.toMatch(/anonymous telemetry|turborepo telemetry|Attention:/i);
      expect(screen).not.toMatch(/\b[0-9a-f]{16}\b/);
    } finally {
      rmSync(config, { recursive: true, force: true });
    }
  }, 600_000);
});
