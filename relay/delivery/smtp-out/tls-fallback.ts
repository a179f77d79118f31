// Opportunistic TLS that cannot be had: a host whose STARTTLS handshake failed after its 220 (it speaks only TLS 1.0
// or 1.1, offers broken ciphers, never finishes the handshake) gets the message in plain text on a fresh connection,
// as opportunistic TLS promises (docs/queue.md "TLS"; Postfix's "may" level retries in plain text too). Without it
// every attempt failed the same way until the queue lifetime bounced the mail. The host is remembered for a while, so
// that its next transactions go in plain text at once instead of paying a failed handshake each.
//
// Exports:
//   plainTextSettings(settings): the settings of such a fallback connection (no STARTTLS, no AUTH).
//   PlainTextHosts: the hosts remembered (bounded, each for a fixed time, on an injected monotonic clock).
import type { ConnectionSettings } from './connection.ts';

/** How long a host whose handshake failed gets plain text at once. */
export const PLAIN_TEXT_MS = 60 * 60 * 1000;
/** Hosts remembered at most: the oldest is forgotten first (it then costs one failed handshake again). */
const PLAIN_TEXT_HOSTS = 10_000;

/**
 * The settings of a connection that goes in plain text after a failed handshake: STARTTLS never sent, and no AUTH,
 * as when a server refuses STARTTLS under opportunistic TLS (connection.ts onStartTls): credentials are not sent in
 * plain text by a fallback.
 */
export function plainTextSettings(settings: ConnectionSettings): ConnectionSettings {
  const plain: ConnectionSettings = {
    ...settings,
    ignoreTls: true,
    requireTls: false,
    opportunisticTls: false,
  };
  delete plain.auth;
  return plain;
}

/** Hosts (host:port) whose STARTTLS handshake failed under opportunistic TLS, each for ttlMs. */
export class PlainTextHosts {
  /** host:port -> until (monotonic ms); in insertion order, so the first is the oldest. */
  private readonly until = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(ttlMs = PLAIN_TEXT_MS, max = PLAIN_TEXT_HOSTS, now: () => number = () => performance.now()) {
    this.ttlMs = ttlMs;
    this.max = max;
    this.now = now;
  }

  remember(host: string): void {
    if (this.ttlMs <= 0 || this.max <= 0) return;
    this.until.delete(host); // to the end: the most recent
    if (this.until.size >= this.max) {
      const oldest = this.until.keys().next();
      if (oldest.done !== true) this.until.delete(oldest.value);
    }
    this.until.set(host, this.now() + this.ttlMs);
  }

  /** The host's handshake failed less than ttlMs ago: connect to it without STARTTLS. */
  has(host: string): boolean {
    const until = this.until.get(host);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.until.delete(host);
    return false;
  }

  get size(): number {
    return this.until.size;
  }
}
