import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const entry = fileURLToPath(new URL("../src/index.ts", import.meta.url));

// What the snippets take from the reader's own code.
const prelude = `
declare const rawBody: Uint8Array;
declare const payload: string;
declare const headers: Headers;
declare const secret: string;
declare function saveReport(reportId: string): Promise<void>;
/** The reader's Mappa SDK client (conduit), in the recovery section. */
declare const mappa: { reports: { create(input: object): Promise<{ jobId: string }> } };
/** The receiver's options, as in the recovery section's first snippet. */
declare const options: import("@mappa-webhooks/core").MappaWebhooksOptions & {
  idempotency: import("@mappa-webhooks/core").IdempotencyStore;
};
`;

/** Type-checks each ```ts block of the README as its own module against the source. */
function checkSnippets(): { count: number; errors: string[] } {
  const snippets = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  const files = new Map<string, string>([["/readme/prelude.d.ts", prelude]]);
  for (const [i, code] of snippets.entries()) {
    files.set(`/readme/snippet${i}.ts`, `${code}\nexport {};\n`);
  }
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    types: ["node"],
    paths: { "@mappa-webhooks/core": [entry] },
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (name) => files.get(name) ?? readFile(name);
  host.fileExists = (name) => files.has(name) || fileExists(name);
  host.getSourceFile = (name, target, ...rest) => {
    const text = files.get(name);
    return text === undefined
      ? getSourceFile(name, target, ...rest)
      : ts.createSourceFile(name, text, target);
  };
  const program = ts.createProgram([...files.keys()], options, host);
  const errors = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file?.fileName.startsWith("/readme/"))
    .map((d) => `${d.file?.fileName}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
  return { count: snippets.length, errors };
}

describe("README", () => {
  it("every TypeScript snippet type-checks against the package", () => {
    const { count, errors } = checkSnippets();
    expect(count).toBeGreaterThanOrEqual(4);
    expect(errors).toEqual([]);
  });
});
