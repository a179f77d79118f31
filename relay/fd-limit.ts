// Whether the process's descriptor limit leaves room for the sessions it admits. `--max-connections` bounds the SMTP
// sessions, not the descriptors: each session holds one, and so does each pooled delivery connection, each large
// message being written, the spool's log, listeners and watches. An RLIMIT_NOFILE below that makes a flood run the
// relay out of descriptors before its table is full (docs/relay.md, "Out of file descriptors"). Node raises its soft
// limit to the hard one at start and can go no further, so the relay says so at start when the hard one is too low.
//
// Exports: parseOpenFilesLimit(text) (pure: /proc/self/limits), descriptorAdvice(limit, maxConnections) (pure),
// readOpenFilesLimit() (reads /proc/self/limits; undefined where there is none).
import { readFile } from 'node:fs/promises';

/**
 * Descriptors the relay needs besides one per session: pools, spool, log, listeners, watches, large messages, and
 * the HTTP listeners' connections (at most 64 on each, lib/http-limits.ts).
 */
export const DESCRIPTOR_HEADROOM = 256;

export interface OpenFilesLimit {
  soft: number;
  hard: number;
}

/** The "Max open files" line of /proc/self/limits; `unlimited` is Infinity. Undefined when the line is not there. */
export function parseOpenFilesLimit(text: string): OpenFilesLimit | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)\s/m.exec(text);
  if (m === null) return undefined;
  const n = (v: string | undefined): number => (v === undefined || v === 'unlimited' ? Infinity : Number(v));
  return { soft: n(m[1]), hard: n(m[2]) };
}

/**
 * A warning when the limit leaves no room for maxConnections sessions and the headroom; else undefined. Node raises
 * its soft limit to the hard one at start, so the soft limit read here is what the hard limit allows.
 */
export function descriptorAdvice(limit: OpenFilesLimit, maxConnections: number): string | undefined {
  const needed = maxConnections + DESCRIPTOR_HEADROOM;
  if (limit.soft >= needed) return undefined;
  return `the open files limit (${limit.soft}) is below the SMTP sessions this process admits (${maxConnections}, --max-connections) plus ${DESCRIPTOR_HEADROOM} for the relay's own files and connections: under a flood the relay runs out of descriptors before its table is full; raise the hard limit to at least ${needed} (LimitNOFILE= in a systemd unit, ulimit -Hn, the container runtime's ulimits) or lower --max-connections`;
}

/** This process's limit, from /proc/self/limits (Linux); undefined where it cannot be read. */
export async function readOpenFilesLimit(): Promise<OpenFilesLimit | undefined> {
  try {
    return parseOpenFilesLimit(await readFile('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}
