// One object per destination: everything the engine limits or remembers about one downstream server.
//
// What a destination is: the server a leg is routed to, as the routing table defines it now (name, host, port, mx,
// tls, authSecretRef, allowPlaintextAuth; destinationKey()). It is known before the MX and address lookups, so the
// engine can decide to dispatch (or hold back) a transaction without resolving anything, and it is what
// maxConnections is declared on ("connections per relay pod to this server"). Like a Postfix next-hop destination,
// it may resolve to several hosts and addresses: those are only where its connections go. A destination owns
//   - backpressure: at most max(16, 4 × maxConnections) transactions dispatched (waiting for a connection or
//     running); further messages wait as ids in its FIFO and are woken one per freed slot;
//   - concurrency: at most ceil(maxConnections / connectionShare) connections in use, in FIFO order;
//   - suspension: an address it could not reach at all is not connected to again for backoffMs (the attempt is
//     deferred with "delivery temporarily suspended"), so a dead host costs one timeout, not one per message. It is
//     this destination's: its key holds the TLS mode and credentials, so an address suspended because it could not
//     give the TLS this destination requires (outcome.ts unreachable) is still tried by the others (another TLS mode,
//     a DSN via MX with Opportunistic);
//   - its connection pools (one SMTP client pool per address, TLS name and credentials, smtp-out/pool.ts), closed
//     after idleMs unused.
// Time comes from the injected clock only (now: the engine's monotonic clock, so a step of the wall clock neither
// stretches a suspension nor reaps a pool in use), and a fake clock drives suspension and idle reaping in tests.
//
// Exports: destinationKey(server), Destination, Destinations (the engine's table of them).
import type { ServerRoute } from '../../routing/model.ts';
import { Fifo } from './fifo.ts';
import { poolKey, type ServerTarget, type ServerTransport, type TransportFactory } from './transport.ts';
import { unreachable, type AttemptReply } from './outcome.ts';

/** The destination of a server route (see the top of this file). */
export function destinationKey(server: ServerRoute): string {
  const auth = server.authSecretRef ? `${server.authSecretRef.namespace}/${server.authSecretRef.name}` : '';
  return `${server.name}|${server.host}|${server.port}|${server.mx}|${server.tls}|${auth}|${server.allowPlaintextAuth === true}`;
}

/** The Secret part of an authKey ("namespace/name#digest" -> "namespace/name"). */
const secretOf = (authKey: string): string => authKey.slice(0, authKey.indexOf('#'));

export interface DestinationDeps {
  /** Monotonic ms (the engine's elapsed clock): suspensions and idle times are durations. */
  now: () => number;
  factory: TransportFactory;
  /** Engines (worker processes) sharing each server's maxConnections. */
  connectionShare: number;
  /** How long an unreachable address is suspended; 0: never. */
  backoffMs: number;
}

/** Closed when unused this long. */
export const POOL_IDLE_MS = 300_000;

interface Pool {
  target: ServerTarget;
  transport: ServerTransport;
  /** Transactions using it now. */
  busy: number;
  lastUsed: number;
}

export class Destination {
  private server: ServerRoute;
  private running = 0;
  private readonly waiting = new Fifo<() => void>();
  private dispatched = 0;
  private readonly blocked = new Fifo<string>();
  private readonly pools = new Map<string, Pool>();
  private readonly suspended = new Map<string, { until: number; reason: string }>();

  readonly key: string;
  private readonly deps: DestinationDeps;

  constructor(key: string, server: ServerRoute, deps: DestinationDeps) {
    this.key = key;
    this.server = server;
    this.deps = deps;
  }

  /** The server's current definition (maxConnections may change with the table). */
  update(server: ServerRoute): void {
    this.server = server;
  }

  /** Connections this engine opens to it at once. */
  get limit(): number {
    return Math.max(1, Math.ceil(this.server.maxConnections / this.deps.connectionShare));
  }

  // ---------------- backpressure ----------------

  /** Transactions dispatched to it at most. */
  get cap(): number {
    return Math.max(16, this.server.maxConnections * 4);
  }

  /** Takes a dispatch slot for a transaction; false when it has enough work (see wait()). */
  tryDispatch(): boolean {
    if (this.dispatched >= this.cap) return false;
    this.dispatched++;
    return true;
  }

  /** The message waits for a dispatch slot (woken by undispatch). */
  wait(id: string): void {
    this.blocked.push(id);
  }

  /**
   * A dispatched transaction is over. Returns the first waiting message that still waits for this destination (it
   * is to be loaded again), if any.
   */
  undispatch(stillWaiting: (id: string) => boolean): string | undefined {
    this.dispatched = Math.max(0, this.dispatched - 1);
    for (;;) {
      const id = this.blocked.shift();
      if (id === undefined) return undefined;
      if (stillWaiting(id)) return id;
    }
  }

  get dispatchedCount(): number {
    return this.dispatched;
  }

  // ---------------- concurrency ----------------

  /** Resolves when a connection slot is free; false when the engine stopped meanwhile. */
  acquire(stopped: () => boolean): Promise<boolean> {
    if (this.running < this.limit) {
      this.running++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      this.waiting.push(() => {
        if (stopped()) return resolve(false);
        this.running++;
        resolve(true);
      });
    });
  }

  release(): void {
    this.running--;
    if (this.running < this.limit) this.waiting.shift()?.();
  }

  /** Lets every waiter go (stop): they see stopped() and give up. */
  dropWaiters(): void {
    for (const w of this.waiting.drain()) w();
  }

  // ---------------- suspension ----------------

  /** Why the address must not be tried now, or undefined. */
  suspension(address: string): string | undefined {
    const s = this.suspended.get(address);
    if (s === undefined) return undefined;
    if (s.until > this.deps.now()) return s.reason;
    this.suspended.delete(address);
    return undefined;
  }

  /** Records how a transaction to the address went: no answer at all (outcome.ts unreachable) suspends it, any answer lifts it. */
  record(address: string, replies: readonly AttemptReply[]): void {
    const down = unreachable(replies);
    if (down && this.deps.backoffMs > 0) {
      this.suspended.set(address, {
        until: this.deps.now() + this.deps.backoffMs,
        reason: replies[0]?.text ?? 'connection failed',
      });
    } else if (!down) {
      this.suspended.delete(address);
    }
  }

  /** flush(): try every address again now. */
  resume(): void {
    this.suspended.clear();
  }

  // ---------------- connections ----------------

  /**
   * One SMTP transaction over the pool of target (created on first use). The caller holds a connection slot
   * (acquire/release).
   */
  async send(
    target: ServerTarget,
    send: (t: ServerTransport) => Promise<Map<string, AttemptReply>>,
  ): Promise<Map<string, AttemptReply>> {
    const pool = this.poolFor(target);
    pool.busy++;
    pool.lastUsed = this.deps.now();
    try {
      return await send(pool.transport);
    } finally {
      pool.busy--;
      pool.lastUsed = this.deps.now();
    }
  }

  private poolFor(target: ServerTarget): Pool {
    const key = poolKey(target);
    let pool = this.pools.get(key);
    if (pool) return pool;
    const limit = this.limit;
    pool = {
      target,
      transport: this.deps.factory({ ...target, maxConnections: limit }),
      busy: 0,
      lastUsed: 0,
    };
    this.pools.set(key, pool);
    if (target.authKey !== undefined) {
      // New credentials (a rotated Secret): close the pools set up with the old ones now rather than when they have
      // been idle for POOL_IDLE_MS. One still sending is left to the idle reaping.
      const secret = secretOf(target.authKey);
      const place = poolKey({ ...target, authKey: '' });
      for (const [k, old] of this.pools) {
        if (
          k !== key &&
          old.busy === 0 &&
          old.target.authKey !== undefined &&
          secretOf(old.target.authKey) === secret &&
          poolKey({ ...old.target, authKey: '' }) === place
        ) {
          old.transport.close();
          this.pools.delete(k);
        }
      }
    }
    return pool;
  }

  /** Closes pools unused for POOL_IDLE_MS. True when nothing is left to remember (the destination can go). */
  reapIdle(): boolean {
    const cutoff = this.deps.now() - POOL_IDLE_MS;
    for (const [k, pool] of this.pools) {
      if (pool.busy === 0 && pool.lastUsed < cutoff) {
        pool.transport.close();
        this.pools.delete(k);
      }
    }
    for (const address of [...this.suspended.keys()]) this.suspension(address);
    return (
      this.pools.size === 0 &&
      this.suspended.size === 0 &&
      this.running === 0 &&
      this.waiting.length === 0 &&
      this.dispatched === 0 &&
      this.blocked.length === 0
    );
  }

  close(): void {
    for (const pool of this.pools.values()) pool.transport.close();
    this.pools.clear();
  }
}

/** The engine's destinations, created on first use and dropped when idle. */
export class Destinations {
  private readonly all = new Map<string, Destination>();

  private readonly deps: DestinationDeps;

  constructor(deps: DestinationDeps) {
    this.deps = deps;
  }

  /** The destination of server (its current definition). */
  of(server: ServerRoute): Destination {
    const key = destinationKey(server);
    let d = this.all.get(key);
    if (d === undefined) {
      d = new Destination(key, server, this.deps);
      this.all.set(key, d);
    } else {
      d.update(server);
    }
    return d;
  }

  get(key: string): Destination | undefined {
    return this.all.get(key);
  }

  get size(): number {
    return this.all.size;
  }

  reapIdle(): void {
    for (const [key, d] of this.all) if (d.reapIdle()) this.all.delete(key);
  }

  resume(): void {
    for (const d of this.all.values()) d.resume();
  }

  dropWaiters(): void {
    for (const d of this.all.values()) d.dropWaiters();
  }

  close(): void {
    for (const d of this.all.values()) d.close();
    this.all.clear();
  }
}
