import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const src = new URL("../src/", import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

describe("module layout", () => {
  it("only the entry point imports the entry point: dependencies run one way", () => {
    const offenders = sources(src)
      .filter((file) => !file.endsWith("/index.ts"))
      .filter((file) =>
        /from\s+["']\.{1,2}\/(?:.*\/)?index\.js["']/.test(readFileSync(file, "utf8")),
      );
    expect(offenders).toEqual([]);
  });
});
