// Connect phase: connections per client IP, shutdown, and the early-talker (pregreet) check.
//
// smtp-server refuses a command that arrives before its greeting ("421 You talk too soon"), which only works while
// the greeting is held back. Holding it back on every connection caps intake at sessions / delay, so (like
// Postfix's postscreen) the relay holds it back only for an address that has not passed the check recently: a client
// that waited for the greeting and then sent a valid MAIL FROM is remembered for passTtlMs and greeted at once.
import { ACCEPT, REPLIES, type Verdict } from './verdict.ts';

export interface ConnectFacts {
  remoteAddress: string;
  /** Open connections from this address, this one included. */
  fromAddress: number;
  maxPerAddress: number;
  draining: boolean;
}

export function decideConnect(f: ConnectFacts): Verdict {
  if (f.draining) return REPLIES.shuttingDown();
  if (f.fromAddress > f.maxPerAddress) return REPLIES.tooManyConnections();
  return ACCEPT;
}

/** Open connections per client address. */
export class ConnectionCounter {
  private readonly byAddress = new Map<string, number>();
  total = 0;

  open(address: string): number {
    const n = (this.byAddress.get(address) ?? 0) + 1;
    this.byAddress.set(address, n);
    this.total++;
    return n;
  }

  close(address: string): void {
    const n = this.byAddress.get(address);
    if (n === undefined) return;
    this.total--;
    if (n <= 1) this.byAddress.delete(address);
    else this.byAddress.set(address, n - 1);
  }

  count(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }
}

/**
 * Remembers addresses that passed the early-talker check; bounded, oldest forgotten first. `now`: monotonic
 * milliseconds (default performance.now()), so that a step of the wall clock does not stretch a pass.
 */
export class GreetingGate {
  private readonly passed = new Map<string, number>();
  readonly delayMs: number;
  readonly passTtlMs: number;
  private readonly now: () => number;
  private readonly maxEntries: number;

  constructor(opts: { delayMs: number; passTtlMs?: number; now?: () => number; maxEntries?: number }) {
    this.delayMs = opts.delayMs;
    this.passTtlMs = opts.passTtlMs ?? 24 * 3_600_000;
    this.now = opts.now ?? (() => performance.now());
    this.maxEntries = opts.maxEntries ?? 100_000;
  }

  /** How long to hold back the greeting for this address. */
  delayFor(address: string): number {
    if (this.delayMs === 0) return 0;
    const at = this.passed.get(address);
    if (at !== undefined && this.now() - at < this.passTtlMs) return 0;
    return this.delayMs;
  }

  pass(address: string): void {
    if (this.delayMs === 0) return;
    this.passed.delete(address);
    this.passed.set(address, this.now());
    if (this.passed.size > this.maxEntries) {
      const oldest = this.passed.keys().next();
      if (oldest.done !== true) this.passed.delete(oldest.value);
    }
  }

  /** An early talker loses its pass. */
  fail(address: string): void {
    this.passed.delete(address);
  }
}

/**
 * Worker `index`'s share of a connection limit split between `count` worker processes: floor(limit / count), plus one
 * for the first `limit % count` workers, so the shares add up to the limit exactly. Never 0 for a positive limit
 * (a worker with no share would refuse every connection the round-robin hands it): when count > limit every worker
 * gets 1, and the total is count, above the limit by count - limit (logged at start).
 */
export function workerShare(limit: number, count: number, index: number): number {
  if (count <= 1) return limit;
  const share = Math.floor(limit / count) + (index < limit % count ? 1 : 0);
  return limit > 0 ? Math.max(1, share) : share;
}
