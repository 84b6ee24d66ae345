// biome-ignore-all lint/performance/useDomNodeTextContent: these are Playwright locators, whose innerText is the rendered text a user sees
// The inspector in a real browser: Debian's Chromium driven by playwright-core, in front of the
// Express example behind `listen --forward-to`, with deliveries sent by `trigger`.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Running, run, SECRET } from "./helpers.js";
import {
  type AppProcess,
  EXPRESS_EXAMPLE,
  startApp,
  startInspecting,
} from "./inspector-helpers.js";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));

let app: AppProcess;
let listener: Running;
let url: string;
let inspector: string;
let context: BrowserContext;
let page: Page;
let profile: string;
const requested: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is missing at ${CHROMIUM}: the inspector's browser tests need it. Install it with \`apt-get install -y chromium\`.`,
    );
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  app = await startApp(EXPRESS_EXAMPLE);
  ({ listener, url, inspector } = await startInspecting([
    "--forward-to",
    `${app.url}/webhooks/mappa`,
  ]));
  profile = mkdtempSync(join(tmpdir(), "mappa-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-quic",
      "--disable-sync",
    ],
    viewport: { width: 1360, height: 860 },
    colorScheme: "light",
  });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: inspector });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("request", (request) => requested.push(request.url()));
  await page.goto(inspector);
});

afterAll(async () => {
  await context?.close();
  await listener?.stop();
  await app?.stop();
  if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
});

const trigger = (type: string, ...args: string[]) =>
  run(["trigger", type, "--url", url, "--no-retry", "--secret", SECRET, ...args]);

/** The visible text of the list's rows, newest first. */
const rowTexts = () => page.locator("#rows tr").allInnerTexts();

describe("the inspector in Chromium", () => {
  it("opens live and empty, with nothing fetched from outside this machine", async () => {
    await expect.poll(() => page.locator("#connection").innerText()).toBe("Live");
    expect(await page.locator("#empty").isVisible()).toBe(true);
    expect(await page.locator("#example").innerText()).toBe(
      `npx @mappa-webhooks/cli trigger report.completed --url ${url}`,
    );
    expect(await page.title()).toBe("Mappa webhooks inspector");
  });

  it("shows each delivery live, newest first, with its verdict and the app's answer", async () => {
    expect((await trigger("report.completed", "--id", "evt_browser_1")).code).toBe(0);
    await expect.poll(rowTexts).toHaveLength(1);
    expect((await rowTexts())[0]).toMatch(
      /report\.completed\s+evt_browser_1\s+✓ valid\s+200\s+\d+ ms/,
    );
    expect(await page.locator("#live").innerText()).toContain("report.completed");

    // Signed with another secret: what a tampered delivery looks like to the receiver.
    expect((await trigger("report.failed", "--secret", "whsec_not_the_one")).code).toBe(1);
    await expect.poll(rowTexts).toHaveLength(2);
    expect((await rowTexts())[0]).toMatch(
      /report\.failed\s+evt_\w+\s+✗ 401 rejected\s+failed check: signature matches the body\s+401/,
    );

    expect((await trigger("report.completed", "--id", "evt_browser_1")).code).toBe(0);
    await expect.poll(rowTexts).toHaveLength(3);
    expect((await rowTexts())[0]).toMatch(/report\.completed\s+evt_browser_1\s+↺ duplicate\s+200/);
    await expect
      .poll(() => page.locator("#live").innerText())
      .toMatch(/New delivery: report\.completed, duplicate, app answered 200/);
    expect(await page.locator("#empty").isVisible()).toBe(false);
    expect(await page.locator("#count").innerText()).toBe("(3)");
  });

  it("is usable from the keyboard: skip link, arrows between deliveries, Enter, Escape", async () => {
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe(
      "Skip to the deliveries",
    );
    // Focus shows: the focused element gets an outline.
    expect(
      await page.evaluate(() => getComputedStyle(document.activeElement as Element).outlineStyle),
    ).toBe("solid");
    await page.keyboard.press("Tab");
    const focusedId = () => page.evaluate(() => document.activeElement?.getAttribute("data-id"));
    const ids = await page
      .locator("#rows a")
      .evaluateAll((links) => links.map((link) => link.getAttribute("data-id")));
    expect(await focusedId()).toBe(ids[0]);
    await page.keyboard.press("ArrowDown");
    expect(await focusedId()).toBe(ids[1]);
    await page.keyboard.press("j");
    expect(await focusedId()).toBe(ids[2]);
    await page.keyboard.press("k");
    expect(await focusedId()).toBe(ids[1]);
    await page.keyboard.press("Enter");
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe("detail-title");
    expect(await page.locator("#detail-title").innerText()).toMatch(/^report\.failed evt_\w+$/);
    await page.keyboard.press("Escape");
    await expect.poll(focusedId).toBe(ids[1]);
    expect(await page.locator("#detail").isHidden()).toBe(true);
  });

  it("explains a tampered delivery step by step", async () => {
    await page.locator("#rows tr").nth(1).locator("a").click();
    const detail = page.locator("#detail");
    await expect
      .poll(() => detail.locator("ol.checks li").allTextContents())
      .toEqual([
        expect.stringMatching(/^✓passed: signature header present: mappa-signature$/),
        expect.stringMatching(/^✓passed: header well-formed: t=\d+, 1 v1 signature$/),
        expect.stringMatching(/^✓passed: timestamp within tolerance: .*\(tolerance 300 s\)$/),
        expect.stringMatching(
          /^✗failed: signature matches the body: No v1 signature matches the body under the configured secret\./,
        ),
        expect.stringMatching(/^✓passed: body is a Mappa event: report\.failed evt_\w+$/),
      ]);
    expect(await detail.innerText()).toContain("✗ not valid: signature_mismatch");
    expect(await detail.locator("#replay-note").innerText()).toContain("original signature");
    // The app's own answer, and the headers and pretty body as received.
    expect(await detail.innerText()).toContain('{"error":"signature_mismatch"}');
    expect(await detail.locator("table.headers").innerText()).toMatch(
      /mappa-signature\s+t=\d+,v1=/,
    );
    expect(await detail.locator("pre.body").innerText()).toMatch(/^\{\n {2}"id": "evt_/);
    await page.screenshot({ path: join(ARTIFACTS, "inspector-tampered-light.png") });
  });

  it("replays a delivery to the app with a fresh signature", async () => {
    await page.locator("#rows tr").nth(2).locator("a").click();
    await expect
      .poll(() => page.locator("#detail-title").innerText())
      .toBe("report.completed evt_browser_1");
    expect(await page.locator("#replay-note").innerText()).toContain("fresh signature");
    await page.getByRole("button", { name: "Replay to the app" }).click();
    // The app verified the fresh signature and knew the event: a duplicate, no handler ran.
    await expect
      .poll(() => page.locator("#action-status").innerText())
      .toMatch(
        /^Replayed \(fresh signature\): the app answered 200 duplicate in \d+ ms: it already had this event and did not take it again \(no handler ran\)\.$/,
      );
    const replays = page.locator("section[aria-labelledby='h-replays']");
    expect(await replays.innerText()).toContain('{"received":true,"duplicate":true}');
    expect(await replays.innerText()).toContain("200 duplicate: the app already had this event");
    await listener.waitFor(
      /↻ replayed report\.completed evt_browser_1 \(fresh signature\) {2}→ app 200 duplicate \d+ ms$/,
    );
    // The list and the detail show the same, latest answer: status and latency agree.
    await expect.poll(async () => (await rowTexts())[2]).toMatch(/200 duplicate · replay 1/);
    const rowLatency = await page.locator("#rows tr").nth(2).locator("td.latency").innerText();
    expect(await page.locator("#latest-answer").innerText()).toBe(
      `Replay 1: the app answered 200 duplicate in ${rowLatency}: a duplicate, it already had this event and did not take it again (no handler ran).`,
    );
  });

  it("copies the delivery as a curl command that reproduces it", async () => {
    await page.getByRole("button", { name: "Copy as curl", exact: true }).click();
    await expect
      .poll(() => page.locator("#action-status").innerText())
      .toBe("Copied the curl command.");
    const command = await page.evaluate(() => navigator.clipboard.readText());
    expect(command).toMatch(new RegExp(`^curl -sS -X POST '${app.url}/webhooks/mappa'`));
    // The same bytes and signature, sent again by curl: the app answers (within the tolerance).
    const { stdout } = await promisify(execFile)("sh", [
      "-c",
      `${command} -o /dev/null -w '%{http_code}'`,
    ]);
    expect(stdout).toBe("200");
  });

  it("copies a freshly signed curl command, which outlives the original signature", async () => {
    await page.getByRole("button", { name: "Copy as curl, freshly signed" }).click();
    await expect
      .poll(() => page.locator("#action-status").innerText())
      .toBe("Copied the curl command, signed now: it is accepted for the next 5 minutes.");
    const command = await page.evaluate(() => navigator.clipboard.readText());
    const t = Number(/mappa-signature: t=(\d+),/.exec(command)?.[1]);
    expect(Math.abs(t - Date.now() / 1000)).toBeLessThan(120);
    const { stdout } = await promisify(execFile)("sh", [
      "-c",
      `${command} -o /dev/null -w '%{http_code}'`,
    ]);
    expect(stdout).toBe("200");
  });

  it("downloads the delivery as a line `listen --load` reads", async () => {
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("link", { name: "Download delivery" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe("delivery-evt_browser_1.jsonl");
    const file = join(ARTIFACTS, download.suggestedFilename());
    await download.saveAs(file);
    const line = JSON.parse(readFileSync(file, "utf8")) as { kind: string; bodyText: string };
    expect(line.kind).toBe("delivery");
    expect(JSON.parse(line.bodyText)).toMatchObject({
      id: "evt_browser_1",
      type: "report.completed",
    });
  });

  it("reads well in light and dark mode (screenshots kept as test artifacts)", async () => {
    await page.emulateMedia({ colorScheme: "light" });
    await page.screenshot({ path: join(ARTIFACTS, "inspector-light.png") });
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: join(ARTIFACTS, "inspector-dark.png") });
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(light).toBe("rgb(255, 255, 255)");
    expect(dark).toBe("rgb(21, 24, 28)");
    await page.emulateMedia({ colorScheme: "light" });
  });

  it("names every control and asked for nothing beyond the inspector", async () => {
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll("button, a")]
        .filter((el) => (el.textContent ?? "").trim() === "" && !el.getAttribute("aria-label"))
        .map((el) => el.outerHTML),
    );
    expect(unnamed).toEqual([]);
    expect(await page.locator("#live").getAttribute("aria-live")).toBe("polite");
    expect(await page.locator("#deliveries thead th").allInnerTexts()).toEqual([
      "Time",
      "Type",
      "Event id",
      "Verdict",
      "App",
      "Latency",
    ]);
    const origin = new URL(inspector).origin;
    expect(requested.filter((address) => !address.startsWith(origin))).toEqual([]);
  });
});

describe("the inspector with 10 000 deliveries", () => {
  let big: Running;
  let bigUrl: string;
  let bigPage: Page;
  const KEEP = 10_000;

  beforeAll(async () => {
    const file = join(profile, "ten-thousand.jsonl");
    const base = Date.parse("2026-01-17T12:00:00.000Z");
    const lines: string[] = [];
    for (let i = 0; i < KEEP; i++) {
      const body = JSON.stringify({ id: `evt_load_${i}`, type: "report.completed", data: {} });
      lines.push(
        JSON.stringify({
          kind: "delivery",
          v: 1,
          id: `d_load${i}`,
          receivedAt: new Date(base + i * 1000).toISOString(),
          method: "POST",
          path: "/webhooks/mappa",
          headers: [["content-type", "application/json"]],
          verdict: {
            ok: false,
            status: 401,
            code: "missing_signature",
            check: "signature header present",
            message: "No signature header.",
          },
          replays: [],
          bodyBase64: Buffer.from(body).toString("base64"),
          bodyText: body,
        }),
      );
    }
    writeFileSync(file, `${lines.join("\n")}\n`);
    let address: string;
    ({
      listener: big,
      url: bigUrl,
      inspector: address,
    } = await startInspecting(["--keep", String(KEEP), "--load", file]));
    bigPage = await context.newPage();
    await bigPage.goto(address);
  }, 120_000);

  afterAll(async () => {
    await bigPage?.close();
    await big?.stop();
  });

  it("loads them all, then adds a new delivery with a bounded amount of DOM work", async () => {
    await expect.poll(() => bigPage.locator("#rows tr").count(), { timeout: 60_000 }).toBe(KEEP);
    expect(await bigPage.locator("#count").innerText()).toBe(`(${KEEP})`);
    // Count every node added to or removed from the list from now on.
    await bigPage.evaluate(() => {
      const counts = { added: 0, removed: 0 };
      (window as unknown as { counts: typeof counts }).counts = counts;
      new MutationObserver((records) => {
        for (const record of records) {
          counts.added += record.addedNodes.length;
          counts.removed += record.removedNodes.length;
        }
      }).observe(document.getElementById("rows") as HTMLElement, {
        childList: true,
        subtree: true,
      });
    });
    const sent = await run([
      "trigger",
      "report.completed",
      "--url",
      bigUrl,
      "--no-retry",
      "--secret",
      SECRET,
      "--id",
      "evt_newest",
    ]);
    expect(sent.code).toBe(0);
    await expect
      .poll(() => bigPage.locator("#rows tr").first().innerText(), { timeout: 30_000 })
      .toMatch(/evt_newest\s+✓ valid/);
    expect(await bigPage.locator("#rows tr").count()).toBe(KEEP);
    // The oldest was dropped; the newest added (and replaced once by its update): a handful
    // of rows touched, not the 2 x 10 000 a full re-render costs.
    expect(await bigPage.locator("#rows tr").last().innerText()).toContain("evt_load_1");
    const counts = await bigPage.evaluate(
      () => (window as unknown as { counts: { added: number; removed: number } }).counts,
    );
    expect(counts.added + counts.removed).toBeLessThanOrEqual(6);
    expect(counts.added).toBeGreaterThanOrEqual(1);
    expect(counts.removed).toBeGreaterThanOrEqual(1);
  });
});
