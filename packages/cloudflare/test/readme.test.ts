// The README's quick start and its D1 example, as pasted: each Worker and its wrangler.toml,
// bundled by wrangler and run on workerd (Miniflare, offline), answer a signed delivery once and
// its copy as a duplicate.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { signPayload } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RunningWorker,
  reportCompleted,
  SECRET,
  signedHeaders,
  startWorker,
} from "./helpers.js";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const readme = readFileSync(join(packageDir, "README.md"), "utf8");

/** The first fenced block of `lang` after `marker` (or after the start). */
function block(lang: string, marker?: string): string {
  const from = marker === undefined ? 0 : readme.indexOf(marker);
  const match = new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(readme.slice(from));
  if (from < 0 || match === null) throw new Error(`no \`\`\`${lang} block after ${marker}`);
  return match[1] as string;
}

/**
 * Writes the README's Worker (the ts block after `tsMarker`) and its wrangler.toml (the toml
 * block after `tomlMarker`, or the first) into a folder of the package, so the bundler resolves
 * their imports from its node_modules, and serves them on workerd.
 */
function example(name: string, tsMarker: string, tomlMarker?: string, objects = true) {
  let worker: RunningWorker | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(packageDir, `.readme-worker-${name}-`));
    const toml = block("toml", tomlMarker);
    const main = /^main\s*=\s*"([^"]+)"/m.exec(toml)?.[1];
    expect(main, "the README's wrangler.toml names the Worker's file").toBe("src/worker.ts");
    mkdirSync(join(dir, "src"));
    writeFileSync(join(dir, "src/worker.ts"), block("ts", tsMarker));
    writeFileSync(join(dir, "wrangler.toml"), toml);
    worker = await startWorker({ dir, objects, bindings: { MAPPA_WEBHOOK_SECRET: SECRET } });
  }, 180_000);
  afterAll(async () => {
    await worker?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (worker === undefined) throw new Error(`the ${name} example did not start`);
    return worker;
  };
}

async function expectOnceThenDuplicate(worker: RunningWorker) {
  const body = reportCompleted("rep_readme");
  const send = async (headers: Record<string, string>) => {
    const res = await fetch(`${worker.url}/webhooks/mappa`, { method: "POST", body, headers });
    return { status: res.status, json: await res.json() };
  };
  const headers = await signedHeaders(body);
  expect(await send(headers)).toEqual({ status: 200, json: { received: true } });
  expect(await send(headers)).toEqual({
    status: 200,
    json: { received: true, duplicate: true },
  });
  const forged = await signPayload({ payload: body, secret: "whsec_someone_else" });
  expect((await send({ ...headers, "mappa-signature": forged })).status).toBe(401);
}

describe("the README's quick start on workerd", () => {
  const worker = example("quickstart", "<!-- quickstart worker -->");
  it("answers a signed delivery 200 once and its copy as a duplicate; a forgery 401", async () => {
    await expectOnceThenDuplicate(worker());
  });
});

describe("the README's D1 example on workerd", () => {
  const worker = example("d1", "<!-- d1 worker -->", "<!-- d1 wrangler -->", false);
  it("answers a signed delivery 200 once and its copy as a duplicate; a forgery 401", async () => {
    await expectOnceThenDuplicate(worker());
  });
});
