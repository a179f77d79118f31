// Slow and idle clients ("slowloris"). smtp-server's idle timeout restarts on every byte, so a client
// that trickles one byte at a time could hold its connection slot forever, and a table full of such clients locked
// everyone else out. The relay bounds what an unauthenticated client can hold, in the spirit of Postfix's postscreen
// and stress-adaptive timeouts:
// - a command line must be complete within commandTimeoutMs of its first byte (SMTPStream.lineStartedAt, patched);
// - a session ends after sessionTimeoutMs (at a point where the client owes input and is not sending a message);
// - under stress (the connection table at least stressRatio full) the idle and command timeouts shrink to
//   stressTimeoutMs;
// - with the table full, a new client evicts the oldest connection (connected for 1 s at least) that has not sent a
//   message and is not sending one (421), so clients that already sent mail keep their slots and a new one is let
//   in. Without such a connection the new client gets 421 4.7.0 as before;
// - a client that half-closed (its FIN came: it can send nothing more) still gets every reply it is owed (the 250 of
//   a message it pipelined with its FIN, as `nc -N` and some scripts send), and its session is closed once the relay
//   owes it nothing: at the second sweep that finds it idle, so the sweep never closes it between two commands.
// Pure: the sweeper in server.ts feeds it facts and a clock.

export interface SlowClientPolicy {
  idleTimeoutMs: number;
  commandTimeoutMs: number;
  sessionTimeoutMs: number;
  /** Idle and command timeout under stress (default 10 s, Postfix's smtpd_timeout under stress). */
  stressTimeoutMs: number;
  /** The share of maxConnections from which the relay is under stress (default 0.75). */
  stressRatio: number;
  maxConnections: number;
}

// Every time here is in ms on the monotonic clock (performance.now()): ages are durations, and a step of the wall
// clock (NTP, a VM resumed) must not end every session at once, nor keep a slow one alive.
export interface SessionFacts {
  /** When the session opened (monotonic ms) */
  openedAt: number;
  /** First byte of the incomplete command line (monotonic ms), 0 when none is pending. */
  lineStartedAt: number;
  /** The client is sending a message (DATA) or waits for the relay (a handler or the spool). */
  busy: boolean;
  /** A message was accepted (250 after DATA) in this session. */
  sentMail: boolean;
  /** The client half-closed its side (FIN): no command can come any more. */
  clientDone?: boolean;
}

export type SweepVerdict = 'keep' | 'CommandTimeout' | 'SessionTimeout' | 'ClientDone';

export function underStress(
  open: number,
  p: Pick<SlowClientPolicy, 'maxConnections' | 'stressRatio'>,
): boolean {
  return p.maxConnections > 0 && open >= Math.ceil(p.maxConnections * p.stressRatio);
}

/** The idle and command timeouts in force. */
export function timeoutsInForce(
  p: SlowClientPolicy,
  stressed: boolean,
): { idleMs: number; commandMs: number } {
  return stressed
    ? {
        idleMs: Math.min(p.idleTimeoutMs, p.stressTimeoutMs),
        commandMs: Math.min(p.commandTimeoutMs, p.stressTimeoutMs),
      }
    : { idleMs: p.idleTimeoutMs, commandMs: p.commandTimeoutMs };
}

export function sweepSession(
  f: SessionFacts,
  now: number,
  commandMs: number,
  sessionMs: number,
): SweepVerdict {
  if (f.busy) return 'keep';
  if (f.clientDone === true) return 'ClientDone';
  if (f.lineStartedAt > 0 && now - f.lineStartedAt >= commandMs) return 'CommandTimeout';
  if (now - f.openedAt >= sessionMs) return 'SessionTimeout';
  return 'keep';
}

/** A session younger than this is never evicted: in a burst of new connections the table is full, not idle. */
const MIN_EVICTION_AGE_MS = 1000;

/**
 * The session a new client may evict when the table is full: the oldest that sent no mail, is not busy, and has
 * been connected at least minAgeMs (so a burst of newcomers does not churn itself).
 */
export function pickEviction<K>(
  sessions: Iterable<[K, SessionFacts]>,
  now: number,
  minAgeMs = MIN_EVICTION_AGE_MS,
): K | undefined {
  let best: K | undefined;
  let bestAt = Infinity;
  for (const [k, f] of sessions) {
    if (f.sentMail || f.busy || now - f.openedAt < minAgeMs) continue;
    if (f.openedAt < bestAt) {
      best = k;
      bestAt = f.openedAt;
    }
  }
  return best;
}
