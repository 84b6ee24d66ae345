// The crash and soak tests' receivers: test/fixture-worker, bundled once, hosted by
// test/fixtures/host.mjs in a process of its own on a persisted state (a temp folder), so a
// test can SIGKILL the runtime mid-delivery and start a new one on what it left on disk.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseEvent } from "@mappa-webhooks/core";
import { signPayload } from "@mappa-webhooks/testing";
import { type Child, storeTestKit } from "@mappa-webhooks/tooling/test-helpers";
import { bundleWorker, SECRET } from "./helpers.js";

/** The store the fixture Worker's receiver runs on. */
export type FixtureStore = "durable-object" | "d1";

export const { startFixture, deliver, keyOf } = storeTestKit({
  testDir: new URL(".", import.meta.url),
  built: [],
  buildHint: "",
  secret: SECRET,
  sign: signPayload,
  parseEvent,
});

/** The fixture Worker's bundle (built once per test file) and the folders to remove after. */
export async function fixtureBundle(): Promise<{
  path: string;
  persistDir(name: string): string;
  remove(): void;
}> {
  const built = await bundleWorker(fileURLToPath(new URL("./fixture-worker/", import.meta.url)));
  const dirs: string[] = [];
  return {
    path: built.path,
    persistDir(name) {
      const dir = mkdtempSync(join(tmpdir(), `mappa-cloudflare-${name}-`));
      dirs.push(dir);
      return dir;
    },
    remove() {
      built.remove();
      for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What {@link startHost} starts: one workerd, one Worker per instance. */
export interface HostOptions {
  bundle: string;
  persist: string;
  store: FixtureStore;
  instances: readonly string[];
  leaseMs?: number;
  /** False: this host's Workers bind another host's objects, through `devRegistry`. */
  owner?: boolean;
  /** The dev registry folder both hosts of a two-process run name. */
  devRegistry?: string;
}

/**
 * Starts the host process and resolves nothing until asked: `view(instance)` is a {@link Child}
 * of that Worker (its `listening on` line, every other line of the process), whose `kill`
 * SIGKILLs workerd first (the runtime holding the delivery), then the Node process hosting it.
 */
export function startHost(options: HostOptions): {
  host: Child;
  view(instance: string): Child;
  kill(): Promise<void>;
} {
  const host = startFixture("host.mjs", {
    BUNDLE: options.bundle,
    PERSIST: options.persist,
    STORE: options.store,
    INSTANCES: options.instances.join(","),
    LEASE_MS: String(options.leaseMs ?? 60_000),
    MAPPA_WEBHOOK_SECRET: SECRET,
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    OWNER: String(options.owner ?? true),
    ...(options.devRegistry === undefined ? {} : { DEV_REGISTRY: options.devRegistry }),
  });
  const workerd = host.waitForLine(/^workerd pid (\d+)$/, 60_000).then((match) => Number(match[1]));
  workerd.catch(() => undefined);
  let killed: Promise<void> | undefined;
  const kill = () => {
    killed ??= (async () => {
      const pid = await Promise.race([workerd, host.exited.then(() => undefined)]).catch(
        () => undefined,
      );
      if (pid !== undefined) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
        // Bounded: a SIGKILLed process is gone within moments.
        for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
      }
      await host.kill("SIGKILL");
    })();
    return killed;
  };
  const listening = /^(\S+) listening on /;
  const view = (instance: string): Child => ({
    ...host,
    waitForMatch: (test, waitOptions) =>
      host.waitForMatch((line) => {
        const owner = listening.exec(line)?.[1];
        return (owner === undefined || owner === instance) && test(line);
      }, waitOptions),
    async waitForLine(pattern, timeoutMs) {
      const line = await view(instance).waitForMatch((l) => pattern.test(l), { timeoutMs });
      return line.match(pattern) as RegExpMatchArray;
    },
    kill,
  });
  return { host, view, kill };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every effect the fixture Workers wrote, and how many first attempts failed on purpose. */
export async function effectsAt(webhookUrl: string): Promise<{
  effects: { key: string; worker: string }[];
  failedFirst: number;
}> {
  const res = await fetch(new URL("/effects", webhookUrl));
  if (!res.ok) throw new Error(`GET /effects answered ${res.status}`);
  return (await res.json()) as { effects: { key: string; worker: string }[]; failedFirst: number };
}
