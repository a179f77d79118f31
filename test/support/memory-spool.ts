// An in-memory Spool (relay/spool/types.ts) for the delivery engine's unit tests: the same contract (update is
// serialized per message, null removes, a gone message resolves undefined), no files. It counts writes and can be
// told to fail the next ones, to test what the engine does when a state cannot be written.
import type {
  AcceptResult,
  BodyCheck,
  EnvelopeMeta,
  LoadResult,
  MessageBody,
  RecoveryReport,
  Spool,
  SpoolState,
} from '../../relay/spool/types.ts';
import type { Readable } from 'node:stream';

export class MemorySpool implements Spool {
  readonly dir = '(memory)';
  readonly recovery: RecoveryReport = {
    messages: 0,
    removedTemp: 0,
    removedOrphans: 0,
    restoredFromLog: 0,
    quarantined: 0,
    durationMs: 0,
  };
  readonly states = new Map<string, SpoolState>();
  readonly bodies = new Map<string, Buffer>();
  /** spool.update calls that wrote (or removed) a state. */
  writes = 0;
  /** The next n updates reject, with an error of code failCode. */
  failUpdates = 0;
  failCode = 'ENOSPC';
  private seq = 0;
  private readonly chains = new Map<string, Promise<unknown>>();

  private readonly clock: () => Date;

  constructor(clock: () => Date) {
    this.clock = clock;
  }

  async accept(meta: EnvelopeMeta, body: Readable): Promise<AcceptResult> {
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
    const raw = Buffer.concat(chunks);
    const id = `${this.clock().getTime().toString(36).padStart(9, '0')}${(this.seq++).toString(36).padStart(4, '0')}`;
    const { recipients, ...rest } = meta;
    this.states.set(id, {
      version: 1,
      id,
      meta: rest,
      size: raw.length,
      legs: recipients.flatMap((r) =>
        r.legs.map((leg) => ({ recipient: r.recipient, leg, state: 'pending' as const, attempts: 0 })),
      ),
    });
    this.bodies.set(id, raw);
    return { ok: true, id };
  }

  list(): Promise<string[]> {
    return Promise.resolve([...this.states.keys()].sort());
  }

  load(id: string): Promise<LoadResult> {
    const s = this.states.get(id);
    return Promise.resolve(
      s
        ? { ok: true, state: structuredClone(s) }
        : { ok: false, reason: 'missing', error: 'no such message' },
    );
  }

  update(
    id: string,
    change: (state: SpoolState) => SpoolState | null,
  ): Promise<SpoolState | null | undefined> {
    const run = async (): Promise<SpoolState | null | undefined> => {
      await Promise.resolve();
      const s = this.states.get(id);
      if (!s) return undefined;
      const given = structuredClone(s);
      const next = change(given);
      if (next === given) return given; // as the spool: nothing changed, nothing written
      // as a disk does: the change was computed, writing (or removing) it failed
      if (this.failUpdates > 0) {
        this.failUpdates--;
        throw Object.assign(new Error(`${this.failCode}: the state could not be written`), {
          code: this.failCode,
        });
      }
      this.writes++;
      if (next === null) {
        this.states.delete(id);
        this.bodies.delete(id);
        return null;
      }
      this.states.set(id, structuredClone(next));
      return structuredClone(next);
    };
    const p = (this.chains.get(id) ?? Promise.resolve()).then(run, run);
    this.chains.set(
      id,
      p.catch(() => undefined),
    );
    return p;
  }

  remove(id: string): Promise<boolean> {
    const existed = this.states.delete(id);
    this.bodies.delete(id);
    return Promise.resolve(existed);
  }

  quarantine(id: string): Promise<void> {
    this.states.delete(id);
    this.bodies.delete(id);
    return Promise.resolve();
  }

  body(id: string): MessageBody {
    return this.bodies.get(id) ?? Buffer.alloc(0);
  }

  checkBody(): Promise<BodyCheck> {
    return Promise.resolve({ ok: true }); // bodies in memory: nothing a power cut could have damaged
  }

  readBody(id: string): Promise<Buffer> {
    return Promise.resolve(this.bodies.get(id) ?? Buffer.alloc(0));
  }

  readHeaders(id: string): Promise<Buffer> {
    const b = this.bodies.get(id) ?? Buffer.alloc(0);
    const end = b.indexOf('\r\n\r\n');
    return Promise.resolve(end < 0 ? b : b.subarray(0, end + 2));
  }

  stalled(): string | undefined {
    return undefined;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
