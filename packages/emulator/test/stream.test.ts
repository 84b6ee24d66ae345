import { afterEach, describe, expect, it } from "vitest";
import { type MappaEmulator, startMappaEmulator } from "../src/index.js";
import { ApiError, createConduitClient, type SseEvent } from "./conduit-client.js";
import { reportBody, until } from "./helpers.js";

let emulator: MappaEmulator | undefined;
afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function setup() {
  emulator = await startMappaEmulator({ clock: "manual" });
  const client = createConduitClient({ baseUrl: emulator.url, apiKey: "k" });
  const { mediaId } = await client.upload(new Uint8Array(64), "call");
  const { jobId } = await client.createReport(reportBody(mediaId));
  return { emulator, client, jobId };
}

/** Reads a stream in the background into `events`; `stop()` aborts the connection. */
function collect(
  client: ReturnType<typeof createConduitClient>,
  jobId: string,
  lastEventId?: string,
) {
  const controller = new AbortController();
  const events: SseEvent[] = [];
  let ended = false;
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const event of client.stream(jobId, {
        signal: controller.signal,
        ...(lastEventId === undefined ? {} : { lastEventId }),
      })) {
        events.push(event);
      }
    } catch (error) {
      if (!controller.signal.aborted) failure = error;
    } finally {
      ended = true;
    }
  })();
  return {
    events,
    ended: () => ended,
    failure: () => failure,
    stop: async () => {
      controller.abort();
      await done;
    },
    done,
  };
}

const jobStatus = (e: SseEvent) => (e.data as { job: { status: string } }).job.status;

describe("GET /v1/jobs/:id/stream", () => {
  it("sends the current status, every stage, then terminal, with an id on each event, and closes", async () => {
    const { emulator, client, jobId } = await setup();
    const stream = collect(client, jobId);
    await until(() => stream.events.length === 1, 30_000, "the opening status");
    expect(stream.events[0]).toMatchObject({
      id: "1",
      event: "status",
      data: { status: "queued", stage: "queued" },
    });
    await emulator.advance(150_000);
    await until(stream.ended, 30_000, "the end of the stream");
    const heartbeats = stream.events.filter((e) => e.event === "heartbeat");
    expect(heartbeats.length).toBeGreaterThan(0);
    expect(
      stream.events
        .filter((e) => e.event !== "heartbeat")
        .map((e) => `${e.id}:${e.event}:${(e.data as { stage?: string }).stage ?? jobStatus(e)}`),
    ).toEqual([
      "1:status:queued",
      "2:status:transcoding",
      "3:stage:extracting",
      "4:stage:scoring",
      "5:stage:rendering",
      "6:stage:finalizing",
      "7:terminal:succeeded",
    ]);
    const terminal = stream.events.at(-1)?.data as { reportId: string; job: { reportId: string } };
    expect(terminal.reportId).toBe(terminal.job.reportId);
    expect(emulator.openStreams()).toBe(0);
  });

  it("resumes after Last-Event-ID: the current status, then only the events missed", async () => {
    const { emulator, client, jobId } = await setup();
    const first = collect(client, jobId);
    await until(() => first.events.length === 1, 30_000, "the opening status");
    await emulator.advance(20_000); // queued → transcoding → extracting
    await until(
      () => first.events.filter((e) => e.event !== "heartbeat").length === 3,
      30_000,
      "three events",
    );
    await first.stop();
    await until(
      () => emulator.openStreams(jobId) === 0,
      30_000,
      "the server to see the disconnect",
    );
    const lastId = first.events.at(-1)?.id as string;
    expect(lastId).toBe("3");
    await emulator.advance(90_000); // scoring and rendering start while disconnected
    const second = collect(client, jobId, lastId);
    const real = () => second.events.filter((e) => e.event !== "heartbeat");
    await until(() => real().length === 3, 30_000, "the replay");
    expect(real().map((e) => [e.id, e.event])).toEqual([
      ["3", "status"],
      ["4", "stage"],
      ["5", "stage"],
    ]);
    expect((real()[0] as SseEvent).data).toMatchObject({ stage: "rendering" });
    await emulator.advance(100_000);
    await until(second.ended, 30_000, "terminal");
    expect(
      real()
        .map((e) => e.id)
        .slice(3),
    ).toEqual(["6", "7"]);
    expect(second.events.at(-1)?.event).toBe("terminal");
  });

  it("sends a heartbeat every 15 s of the emulator's clock, carrying the last event id", async () => {
    const { emulator, client, jobId } = await setup();
    emulator.planJob(jobId, { latencyMs: 10_000_000 });
    const stream = collect(client, jobId);
    await until(() => stream.events.length === 1, 30_000, "the opening status");
    await emulator.advance(14_999);
    await emulator.advance(1);
    await until(() => stream.events.length === 2, 30_000, "a heartbeat");
    await emulator.advance(15_000);
    await until(() => stream.events.length === 3, 30_000, "a second heartbeat");
    const beats = stream.events.slice(1);
    expect(beats.map((e) => [e.event, e.id])).toEqual([
      ["heartbeat", "1"],
      ["heartbeat", "1"],
    ]);
    expect(
      Date.parse(((beats[1] as SseEvent).data as { timestamp: string }).timestamp) -
        Date.parse(((beats[0] as SseEvent).data as { timestamp: string }).timestamp),
    ).toBe(15_000);
    await stream.stop();
  });

  it("survives a dropped connection: wait() reconnects with Last-Event-ID and gets the terminal event", async () => {
    const { emulator, client, jobId } = await setup();
    let connections = 0;
    const waiting = client.wait(jobId, { onConnect: () => connections++ });
    await until(() => emulator.openStreams(jobId) === 1, 30_000, "the first connection");
    await emulator.advance(20_000);
    expect(emulator.dropStreams(jobId)).toBe(1);
    await until(
      () => connections === 2 && emulator.openStreams(jobId) === 1,
      30_000,
      "the reconnection",
    );
    await emulator.advance(130_000);
    const result = await waiting;
    expect(result.job.status).toBe("succeeded");
    expect(result.connections).toBe(2);
    const replayed = result.events.filter((e) => e.event === "stage").map((e) => e.id);
    expect(new Set(replayed).size).toBe(replayed.length);
    expect((await client.getReport(result.job.reportId as string)).jobId).toBe(jobId);
  });

  it("a finished job's stream sends status and terminal at once; a failed one carries the error", async () => {
    const { emulator, client } = await setup();
    const { mediaId } = await client.upload(new Uint8Array(8), "x");
    const { jobId } = await client.createReport(
      reportBody(mediaId, { label: "fail:no_speech_detected" }),
    );
    await emulator.advance(150_000);
    const result = await client.wait(jobId);
    expect(result.job.status).toBe("failed");
    expect(result.job.error?.code).toBe("no_speech_detected");
    expect(result.events.map((e) => e.event)).toEqual(["status", "terminal"]);
  });

  it("an unknown job is a 404 before any stream; a bad timeout a 422", async () => {
    const { client, jobId } = await setup();
    const error = await collect(client, "job_missing").done.then(() => undefined);
    expect(error).toBeUndefined();
    const unknown = collect(client, "job_missing");
    await unknown.done;
    expect(unknown.failure()).toBeInstanceOf(ApiError);
    expect(unknown.failure()).toMatchObject({ status: 404 });
    const bad = await fetch(`${emulator?.url}/v1/jobs/${jobId}/stream?timeout=999999`, {
      headers: { "Mappa-Api-Key": "k" },
    });
    expect(bad.status).toBe(422);
  });

  it("?timeout=<ms> ends the stream without terminal after that long on the emulator's clock", async () => {
    const { emulator, client, jobId } = await setup();
    emulator.planJob(jobId, { latencyMs: 10_000_000 });
    const response = await fetch(`${emulator.url}/v1/jobs/${jobId}/stream?timeout=5000`, {
      headers: { "Mappa-Api-Key": "k" },
    });
    const text = response.text();
    await until(() => emulator.openStreams(jobId) === 1, 30_000, "the stream");
    await emulator.advance(5_000);
    expect(await text).not.toContain("terminal");
    expect(client).toBeDefined();
  });
});
