import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type Child, cleanupDirs, DRIVER, startFixture, tempDir } from "./helpers.js";

const children: Child[] = [];
afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  cleanupDirs();
});

describe(`two processes on one file (${DRIVER}, WAL)`, () => {
  it("claim the same 500 keys at the same moment: each key is claimed exactly once", async () => {
    const dir = tempDir("multiprocess");
    const env = { DATABASE: join(dir, "mappa-webhooks.db"), GO: join(dir, "go"), COUNT: "500" };
    const processes = [startFixture("claimer.mjs", env), startFixture("claimer.mjs", env)];
    children.push(...processes);
    for (const child of processes) await child.waitForLine(/^ready$/, 30_000);
    writeFileSync(env.GO, "");
    const claimed = await Promise.all(
      processes.map(async (child) => {
        const [, list] = await child.waitForLine(/^claimed (.*)$/, 60_000);
        return JSON.parse(list as string) as string[];
      }),
    );
    const [first = [], second = []] = claimed;
    console.log(
      `[multiprocess] ${JSON.stringify({ driver: DRIVER, keys: 500, first: first.length, second: second.length })}`,
    );
    const both = first.filter((key) => second.includes(key));
    expect(both).toEqual([]);
    expect(new Set([...first, ...second]).size).toBe(500);
    for (const child of processes) expect(await child.exited).toBe(0);
  });
});
