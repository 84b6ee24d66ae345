// The suite reads its own copy of the shared vectors (fixtures/), not the core's test fixtures.
// The copy must stay the shared vectors to the byte: never edit it, copy it again from
// /work/shared/vectors (where generate.mjs writes them), as the core's copy is.
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { eventVectors, signatureVectors } from "../src/index.js";

const read = (url: URL) => readFileSync(url, "utf8");
const SHARED = new URL("file:///work/shared/vectors/");

describe("the suite's copy of the shared vectors", () => {
  it.each(["signature.json", "events.json"])("%s is the shared file, byte for byte", (file) => {
    const copy = read(new URL(`../fixtures/${file}`, import.meta.url));
    // The core's copy of the same vectors, in this repository.
    expect(copy).toBe(read(new URL(`../../core/test/fixtures/${file}`, import.meta.url)));
    // And where the vectors come from, on a machine that has them.
    const source = new URL(file, SHARED);
    if (existsSync(source)) expect(copy).toBe(read(source));
  });

  it("is what the suite runs", () => {
    expect(signatureVectors.cases.length).toBeGreaterThan(0);
    expect(eventVectors.cases).toHaveLength(26);
  });
});
