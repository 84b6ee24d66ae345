/**
 * The emulator's clock: every duration (job stages, retry waits, heartbeats, retention) is
 * measured on it. In `"real"` mode it runs `1 / timeScale` times faster than the wall clock; in
 * `"manual"` mode it only moves when {@link EmulatorClock.advance} is called. Both modes accept
 * `advance`, and {@link EmulatorClock.settle} waits for every due task and every request the
 * tasks started (webhook attempts), so tests never sleep on wall time.
 */

/** How the emulator's clock moves. */
export type ClockMode = "real" | "manual";

interface Task {
  at: number;
  seq: number;
  run: () => void;
  cancelled: boolean;
}

/** A handle to cancel a scheduled task. */
export interface ScheduledTask {
  cancel(): void;
}

const MAX_SETTLE_ROUNDS = 100_000;

/** The virtual clock and task queue shared by every part of one emulator. */
export class EmulatorClock {
  readonly mode: ClockMode;
  readonly timeScale: number;
  private readonly realStart = Date.now();
  private readonly virtualStart: number;
  private offset = 0;
  private manualElapsed = 0;
  private tasks: Task[] = [];
  private seq = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(options: { mode: ClockMode; timeScale: number; start?: number }) {
    this.mode = options.mode;
    this.timeScale = options.timeScale;
    this.virtualStart = options.start ?? this.realStart;
  }

  /** Virtual now, in unix ms. */
  now(): number {
    if (this.mode === "manual") return this.virtualStart + this.offset + this.manualElapsed;
    return this.virtualStart + this.offset + (Date.now() - this.realStart) / this.timeScale;
  }

  /** Runs `run` once `delayMs` of virtual time has passed. */
  schedule(delayMs: number, run: () => void): ScheduledTask {
    const task: Task = {
      at: this.now() + Math.max(0, delayMs),
      seq: this.seq++,
      run,
      cancelled: false,
    };
    // Sorted insert from the end: most tasks are scheduled later than the ones already queued.
    let index = this.tasks.length;
    while (index > 0) {
      const previous = this.tasks[index - 1] as Task;
      if (previous.at < task.at || (previous.at === task.at && previous.seq < task.seq)) break;
      index--;
    }
    this.tasks.splice(index, 0, task);
    if (index === 0) this.arm();
    return {
      cancel: () => {
        task.cancelled = true;
      },
    };
  }

  /** Keeps `settle()` waiting until `promise` is done (a webhook attempt, a resend). */
  track<T>(promise: Promise<T>): Promise<T> {
    const tracked = promise.finally(() => this.inflight.delete(tracked));
    this.inflight.add(tracked);
    tracked.catch(() => {});
    return promise;
  }

  /** Tasks still queued (future and due). */
  pendingTasks(): number {
    return this.tasks.filter((task) => !task.cancelled).length;
  }

  /** When the next queued task is due (virtual unix ms), or undefined. */
  nextDueAt(): number | undefined {
    return this.tasks.find((task) => !task.cancelled)?.at;
  }

  /**
   * Moves the clock forward by `ms`, running every task that falls due on the way in time order
   * and waiting for the work each one starts before running the next (so a retry scheduled by a
   * failed attempt lands at the right time). Works in both modes.
   */
  async advance(ms: number): Promise<void> {
    if (!(Number.isFinite(ms) && ms >= 0)) {
      throw new RangeError("advance(ms) needs a number of milliseconds >= 0.");
    }
    const target = this.now() + ms;
    for (let round = 0; round < MAX_SETTLE_ROUNDS; round++) {
      await this.settle();
      const next = this.tasks.find((task) => !task.cancelled);
      if (next === undefined || next.at > target) break;
      this.moveTo(next.at);
    }
    this.moveTo(target);
    await this.settle();
  }

  /**
   * Resolves when nothing is due and nothing started by a task is still running: every webhook
   * attempt that was due has been answered and recorded. Future tasks stay queued.
   */
  async settle(): Promise<void> {
    for (let round = 0; round < MAX_SETTLE_ROUNDS; round++) {
      this.runDue();
      if (this.inflight.size === 0) {
        // One macrotask turn lets I/O callbacks queue their follow-ups before we decide.
        await new Promise((resolve) => setImmediate(resolve));
        this.runDue();
        if (this.inflight.size === 0) return;
      }
      await Promise.allSettled([...this.inflight]);
    }
    throw new Error("@mappa-webhooks/emulator: settle() gave up after 100000 rounds of work.");
  }

  /** Runs every queued task, however far in the future, until none is left (bounded). */
  async runAll(maxTasks = 100_000): Promise<void> {
    for (let index = 0; index < maxTasks; index++) {
      await this.settle();
      const next = this.tasks.find((task) => !task.cancelled);
      if (next === undefined) return;
      this.moveTo(next.at);
    }
    throw new Error(`@mappa-webhooks/emulator: runAll() stopped after ${maxTasks} tasks.`);
  }

  /** Stops the timer; queued tasks never run. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.tasks = [];
  }

  /** Waits for the requests still running (used by close). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  private moveTo(at: number): void {
    const now = this.now();
    if (at <= now) return;
    if (this.mode === "manual") this.manualElapsed += at - now;
    else this.offset += at - now;
    this.runDue();
  }

  private runDue(): void {
    const now = this.now();
    while (this.tasks.length > 0) {
      const task = this.tasks[0] as Task;
      if (task.at > now) break;
      this.tasks.shift();
      if (!task.cancelled) task.run();
    }
    this.arm();
  }

  private arm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed || this.mode === "manual") return;
    while (this.tasks[0]?.cancelled) this.tasks.shift();
    const next = this.tasks[0];
    if (next === undefined) return;
    const realDelay = Math.max(0, (next.at - this.now()) * this.timeScale);
    // setTimeout's limit is 2^31-1 ms; a later task re-arms when this one fires.
    this.timer = setTimeout(() => this.runDue(), Math.min(realDelay, 2_147_000_000));
    this.timer.unref?.();
  }
}
