// Group commit: one fsync (of a directory, usually) serves every change made before it started. Callers that arrive
// while one runs share the next one. Used by the spool for its queue directory (relay/spool/spool.ts) and by the
// benchmark's floor relay (bench/relay/floor-relay.ts).
/** One directory fsync serves every rename queued before it started (group commit). */
export class GroupSync {
  private inFlight: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private readonly run: () => Promise<void>;

  constructor(run: () => Promise<void>) {
    this.run = run;
  }

  sync(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.inFlight) return this.start();
    // A sync is running, but it may have started before the caller's rename: wait for the next one.
    const prior = this.inFlight.then(
      () => undefined,
      () => undefined,
    );
    const next = prior.then(() => {
      this.queued = undefined;
      return this.start();
    });
    this.queued = next;
    return next;
  }

  /** Settles once the fsyncs started or queued so far have ended (never rejects). */
  settled(): Promise<void> {
    return (this.queued ?? this.inFlight ?? Promise.resolve()).then(
      () => undefined,
      () => undefined,
    );
  }

  private start(): Promise<void> {
    const p = this.run().finally(() => {
      if (this.inFlight === p) this.inFlight = undefined;
    });
    this.inFlight = p;
    return p;
  }
}
