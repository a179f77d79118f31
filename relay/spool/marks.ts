// The mark that a message file is complete (its mode, spool.ts), set late or not at all.
//
// Most messages are delivered and removed within milliseconds of their 250, and a file that is removed needs no
// mark. So accept() hands the open file over here once its data is durable. A message removed is only closed; one
// whose state is rewritten (a leg deferred: it stays queued) is marked and closed then, as results come in; the rest
// are marked and closed by a sweep one to two periods later, so that the sweep rarely finds many files at once. That is one thread-pool
// call fewer for every message delivered at once (each call wakes a pool thread: docs/perf.md).
//
// The mark is needed neither for the 250 nor for delivery: after a crash a complete file still in its writing mode
// is delivered (its footer decides). The mode only tells apart, for a file whose footer is damaged, an accept cut
// short (writing mode: never acknowledged, removed) from damage after completion (complete mode: quarantined). A
// mode change is not fsynced on its own either way: it reaches the disk with the next journal commit.
//
// Exports: CompletionMarks, MarkHandle, CompletionMarksOptions.

/** The part of an open message file the marks use. */
export interface MarkHandle {
  chmod(mode: number): Promise<void>;
  close(): Promise<void>;
}

export interface CompletionMarksOptions {
  /** The mode that marks a file complete. */
  mode: number;
  /** A file held is marked one to two periods after it was handed over. */
  periodMs: number;
  /** The most files held open at once; a file handed over beyond it is marked at once. */
  maxHeld: number;
  /** A mark that failed (the file stays in its writing mode; it is closed all the same). */
  onMarkError: (err: unknown, id: string) => void;
}

export class CompletionMarks {
  private readonly o: CompletionMarksOptions;
  /** Handed over since the last sweep, and before it: the next sweep marks `older`. */
  private newer = new Map<string, MarkHandle>();
  private older = new Map<string, MarkHandle>();
  /** Marks and closes under way (flush waits for them). */
  private readonly running = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(o: CompletionMarksOptions) {
    this.o = o;
  }

  /** Files held open, waiting for their mark or their removal. */
  get held(): number {
    return this.newer.size + this.older.size;
  }

  /** The sweep timer runs (only while files are held, or were at the last sweep). */
  get sweeping(): boolean {
    return this.timer !== undefined;
  }

  /** Takes over the open file of a message just accepted (its data durable): marked later, or closed at removal. */
  hold(id: string, fh: MarkHandle): void {
    if (this.held >= this.o.maxHeld) {
      this.mark(id, fh);
      return;
    }
    this.newer.set(id, fh);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.o.periodMs);
      this.timer.unref();
    }
  }

  /** The message is being removed: its file, if still held, is closed without a mark. */
  release(id: string): void {
    const fh = this.take(id);
    if (fh !== undefined) this.track(fh.close().catch(() => undefined));
  }

  /** The message stays queued (its state was just rewritten): its file, if still held, is marked and closed now. */
  markNow(id: string): void {
    const fh = this.take(id);
    if (fh !== undefined) this.mark(id, fh);
  }

  /** Marks the files held since before the last sweep (the timer calls it every period). */
  sweep(): void {
    const due = this.older;
    this.older = this.newer;
    this.newer = new Map();
    for (const [id, fh] of due) this.mark(id, fh);
    if (this.older.size === 0) this.stopTimer();
  }

  /** Marks and closes every file held, and waits for every mark under way (the spool closes). */
  async flush(): Promise<void> {
    this.stopTimer();
    const all = [...this.older, ...this.newer];
    this.older = new Map();
    this.newer = new Map();
    for (const [id, fh] of all) this.mark(id, fh);
    await Promise.all([...this.running]);
  }

  /** The file held for `id`, no longer held. */
  private take(id: string): MarkHandle | undefined {
    const fh = this.newer.get(id) ?? this.older.get(id);
    this.newer.delete(id);
    this.older.delete(id);
    return fh;
  }

  private mark(id: string, fh: MarkHandle): void {
    this.track(
      fh
        .chmod(this.o.mode)
        .catch((err: unknown) => this.o.onMarkError(err, id))
        .finally(() => fh.close().catch(() => undefined)),
    );
  }

  private track(p: Promise<void>): void {
    this.running.add(p);
    const done = (): void => {
      this.running.delete(p);
    };
    p.then(done, done);
  }

  private stopTimer(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
