// What the tests read from the repository: the published packages and every README's quick start.
//
// The convention (every package README): the first code block of its "Quick start" section is a
// complete file, with `<!-- quickstart [kind] -->` on the line before its fence. Kinds:
// - (none): a program run with `tsx`; it listens on PORT at /webhooks/mappa and logs
//   `report ready <reportId>` for each report.completed it handles;
// - `next`: a Next.js route file, app/webhooks/mappa/route.ts, run with `next dev`;
// - `lambda`: a Lambda handler module exporting `handler`, invoked as a function URL would;
// - `client`: a program that sends a delivery to a receiver on PORT and exits 0 once delivered.
// A README may state the tsconfig.json its quick start needs: a ```json block with
// `<!-- quickstart tsconfig -->` before its fence. Packages install from the README's
// `npm install` lines.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

export const root = resolve(import.meta.dirname, "../../..");

export interface WorkspacePackage {
  name: string;
  version: string;
  dir: string;
  private: boolean;
  manifest: Record<string, unknown>;
}

/** Every package under packages/ (others' new packages included as soon as they appear). */
export function workspacePackages(): WorkspacePackage[] {
  const dir = join(root, "packages");
  return readdirSync(dir)
    .filter((name) => existsSync(join(dir, name, "package.json")))
    .map((name) => {
      const manifest = JSON.parse(readFileSync(join(dir, name, "package.json"), "utf8")) as Record<
        string,
        unknown
      >;
      return {
        name: String(manifest.name),
        version: String(manifest.version),
        dir: join(dir, name),
        private: manifest.private === true,
        manifest,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

export const publishedPackages = (): WorkspacePackage[] =>
  workspacePackages().filter((p) => !p.private);

/** Published packages whose quick start is commands, not a program (their READMEs say so). */
export const COMMAND_LINE_PACKAGES = new Set(["@mappa-webhooks/cli"]);

export type QuickstartKind = "server" | "next" | "lambda" | "client";

export interface Quickstart {
  /** The README, relative to the repository root. */
  readme: string;
  /** A file-safe name. */
  slug: string;
  kind: QuickstartKind;
  code: string;
  /** The tsconfig.json the README states, verbatim, if it states one. */
  tsconfig: string | undefined;
  /** Bare module specifiers the code imports, as package names. */
  imports: string[];
  /** Packages named by the README's `npm install` lines. */
  installs: string[];
}

const FENCE = /^```(\w*)\n([\s\S]*?)^```$/gm;

/** Every fenced block of a markdown text, with the comment line before it, if any. */
export function codeBlocks(
  text: string,
): { lang: string; code: string; marker: string | undefined; index: number }[] {
  return [...text.matchAll(FENCE)].map((m) => {
    const before = text.slice(0, m.index).split("\n");
    const previous = before[before.length - 2]?.trim() ?? "";
    const marker = /^<!--\s*(quickstart[^>]*?)\s*-->$/.exec(previous)?.[1];
    return { lang: m[1] ?? "", code: m[2] ?? "", marker, index: m.index ?? 0 };
  });
}

/** Package names from `npm install …` lines in ```sh blocks (flags and comments dropped). */
export function installedPackages(text: string): string[] {
  const names = new Set<string>();
  for (const block of codeBlocks(text)) {
    if (block.lang !== "sh") continue;
    for (const line of block.code.split("\n")) {
      const words = line.replace(/#.*$/, "").trim().split(/\s+/);
      if (words[0] !== "npm" || (words[1] !== "install" && words[1] !== "i")) continue;
      for (const word of words.slice(2)) if (!word.startsWith("-")) names.add(packageName(word));
    }
  }
  return [...names];
}

/** `@scope/name@^1` → `@scope/name`, `name/sub` → `name`. */
export function packageName(specifier: string): string {
  const parts = specifier.split("/");
  const name = specifier.startsWith("@") ? `${parts[0]}/${parts[1]}` : (parts[0] as string);
  return name.replace(/(?!^)@.*$/, "");
}

/** Bare specifiers imported by a module's source (`node:` built-ins excluded). */
export function importedPackages(code: string): string[] {
  const found = new Set<string>();
  for (const m of code.matchAll(/(?:^|\n)\s*import\s[^;]*?from\s+"([^"]+)"|import\s+"([^"]+)"/g)) {
    const specifier = (m[1] ?? m[2]) as string;
    if (specifier.startsWith("node:") || specifier.startsWith(".")) continue;
    found.add(packageName(specifier));
  }
  return [...found];
}

/** The first code block of the "Quick start" section, and the marker on it. */
export function quickstartSection(
  text: string,
): { lang: string; marker: string | undefined } | undefined {
  const start = text.search(/^## Quick start\s*$/m);
  if (start < 0) return undefined;
  const rest = text.slice(start + 1);
  const next = rest.search(/^## /m);
  const section = next < 0 ? rest : rest.slice(0, next);
  const first = codeBlocks(section)[0];
  return first === undefined ? undefined : { lang: first.lang, marker: first.marker };
}

export function readmeOf(path: string): string {
  return readFileSync(join(root, path), "utf8");
}

/** Every README and document a user reads: root, packages, examples, docs, bench. */
export function documents(): string[] {
  const found = ["README.md", "BENCHMARKS.md"].filter((f) => existsSync(join(root, f)));
  for (const dir of ["packages", "examples"]) {
    for (const name of readdirSync(join(root, dir))) {
      const readme = join(root, dir, name, "README.md");
      if (existsSync(readme)) found.push(relative(root, readme));
    }
  }
  for (const name of readdirSync(join(root, "docs"))) {
    if (name.endsWith(".md")) found.push(`docs/${name}`);
  }
  if (existsSync(join(root, "bench/README.md"))) found.push("bench/README.md");
  return found;
}

/** Every marked quick start of every package README. */
export function quickstarts(): Quickstart[] {
  const found: Quickstart[] = [];
  for (const pkg of workspacePackages()) {
    const path = join(pkg.dir, "README.md");
    if (!existsSync(path)) continue;
    const readme = relative(root, path);
    const text = readFileSync(path, "utf8");
    const blocks = codeBlocks(text);
    const tsconfig = blocks.find((b) => b.marker === "quickstart tsconfig")?.code;
    for (const block of blocks) {
      const kind = /^quickstart(?:\s+(next|lambda|client))?$/.exec(block.marker ?? "")?.[1];
      if (
        block.marker === undefined ||
        !/^quickstart(\s+(next|lambda|client))?$/.test(block.marker)
      ) {
        continue;
      }
      found.push({
        readme,
        slug: `${pkg.dir.split("/").pop()}${found.some((q) => q.readme === readme) ? "-2" : ""}`,
        kind: (kind ?? "server") as QuickstartKind,
        code: block.code,
        tsconfig,
        imports: importedPackages(block.code),
        installs: installedPackages(text),
      });
    }
  }
  return found;
}
