// Parity while dual: the relay's per-policy and per-TestRecipient counts of primaries and copies, as the relay
// writes them into its heartbeat Lease (annotation mailroute.io/parity) and the operator sums them over the relays
// into DeliveryPolicy and TestRecipient status.parity. Pure; shared by the relay (writer) and the operator (reader),
// like contract/relay-lease.ts.
//
//   mailroute.io/parity: {"v":1,"policies":{"ns/name":C},"testRecipients":{"ns/name":C},"dropped":N}
//   C = {"p": primary delivered, "c": copies delivered, "s": {reason: copies suppressed}, "q": copies pending,
//        "l": [copy lag counts per LAG_BUCKETS_SECONDS bucket, then one for longer]}
//
// Counts are since the relay started (counters, as in Prometheus); the operator sums the relays with a fresh Lease.
// The annotation is bounded (MAX_PARITY_BYTES): when it would be larger, the TestRecipients with the fewest legs are
// left out first and counted in "dropped" (the policy totals stay complete).

export const PARITY_ANNOTATION = 'mailroute.io/parity';
/** Annotations of an object share 256 KiB; the parity report stays well below. */
const MAX_PARITY_BYTES = 32 * 1024;

/** Upper bounds (seconds) of the copy-lag histogram buckets: the metric's buckets and the annotation's. */
export const LAG_BUCKETS_SECONDS = [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600] as const;

/**
 * Why a copy was not delivered:
 * - rejected: a 5xx, with bounces Suppress (nobody told);
 * - expired: still deferred at the end of the queue lifetime, with bounces Suppress;
 * - bounced: failed with bounces Notify (the sender got a DSN);
 * - shed: ended with bounces Suppress to keep room for primary mail on a spool volume low on space
 *   (relay/delivery/shed.ts).
 */
const SUPPRESS_REASONS = ['rejected', 'expired', 'bounced', 'shed'] as const;
export type SuppressReason = (typeof SUPPRESS_REASONS)[number];

export interface ParityCounts {
  /** Legs of record delivered. */
  primary: number;
  /** Copy legs delivered. */
  copies: number;
  /** Copy legs that ended undelivered, by reason. */
  suppressed: Partial<Record<SuppressReason, number>>;
  /** Copy legs not final yet. */
  pending: number;
  /** Copy lag histogram: counts per LAG_BUCKETS_SECONDS bucket, the last entry for longer ones. */
  lag: number[];
}

export interface ParityReport {
  /** "namespace/name" of a DeliveryPolicy -> its counts (every leg the policy planned). */
  policies: Record<string, ParityCounts>;
  /** "namespace/name" of a TestRecipient -> the counts of the legs planned for it. */
  testRecipients: Record<string, ParityCounts>;
  /** TestRecipients left out to keep the annotation small. */
  dropped: number;
}

export function emptyCounts(): ParityCounts {
  return {
    primary: 0,
    copies: 0,
    suppressed: {},
    pending: 0,
    lag: new Array<number>(LAG_BUCKETS_SECONDS.length + 1).fill(0),
  };
}

/** The bucket index of a lag. */
export function lagBucket(seconds: number): number {
  const i = LAG_BUCKETS_SECONDS.findIndex((b) => seconds <= b);
  return i < 0 ? LAG_BUCKETS_SECONDS.length : i;
}

interface WireCounts {
  p: number;
  c: number;
  s: Partial<Record<SuppressReason, number>>;
  q: number;
  l: number[];
}

const toWire = (c: ParityCounts): WireCounts => ({
  p: c.primary,
  c: c.copies,
  s: c.suppressed,
  q: c.pending,
  l: c.lag,
});

/** The annotation value, at most maxBytes long (TestRecipients with the fewest legs dropped first). */
export function encodeParity(report: ParityReport, maxBytes = MAX_PARITY_BYTES): string {
  const policies = Object.fromEntries(Object.entries(report.policies).map(([k, v]) => [k, toWire(v)]));
  const size = (c: ParityCounts) => c.primary + c.copies + c.pending;
  const trs = Object.entries(report.testRecipients).sort(
    (a, b) => size(b[1]) - size(a[1]) || (a[0] < b[0] ? -1 : 1),
  );
  let keep = trs.length;
  for (;;) {
    const text = JSON.stringify({
      v: 1,
      policies,
      testRecipients: Object.fromEntries(trs.slice(0, keep).map(([k, v]) => [k, toWire(v)])),
      dropped: report.dropped + trs.length - keep,
    });
    if (text.length <= maxBytes || keep === 0) return text;
    // Shrink in proportion to the excess (at least one), so a huge report takes a few rounds, not thousands.
    keep = Math.max(0, Math.min(keep - 1, Math.floor((keep * maxBytes) / text.length)));
  }
}

const count = (x: unknown): number => (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : 0);

function fromWire(x: unknown): ParityCounts | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const w = x as Partial<Record<keyof WireCounts, unknown>>;
  const c = emptyCounts();
  c.primary = count(w.p);
  c.copies = count(w.c);
  c.pending = count(w.q);
  if (typeof w.s === 'object' && w.s !== null) {
    for (const r of SUPPRESS_REASONS) {
      const n = count((w.s as Record<string, unknown>)[r]);
      if (n > 0) c.suppressed[r] = n;
    }
  }
  if (Array.isArray(w.l)) for (let i = 0; i < c.lag.length; i++) c.lag[i] = count(w.l[i]);
  return c;
}

/** The report in an annotation value; undefined when absent or not a parity report. */
export function decodeParity(text: string | undefined): ParityReport | undefined {
  if (text === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null || (raw as { v?: unknown }).v !== 1) return undefined;
  const r = raw as { policies?: unknown; testRecipients?: unknown; dropped?: unknown };
  const table = (t: unknown): Record<string, ParityCounts> => {
    const out: Record<string, ParityCounts> = {};
    if (typeof t !== 'object' || t === null) return out;
    for (const [k, v] of Object.entries(t)) {
      const c = fromWire(v);
      if (c !== undefined) out[k] = c;
    }
    return out;
  };
  return { policies: table(r.policies), testRecipients: table(r.testRecipients), dropped: count(r.dropped) };
}

function addCounts(into: ParityCounts, c: ParityCounts): void {
  into.primary += c.primary;
  into.copies += c.copies;
  into.pending += c.pending;
  for (const r of SUPPRESS_REASONS) {
    const n = c.suppressed[r] ?? 0;
    if (n > 0) into.suppressed[r] = (into.suppressed[r] ?? 0) + n;
  }
  for (let i = 0; i < into.lag.length; i++) into.lag[i] = (into.lag[i] ?? 0) + (c.lag[i] ?? 0);
}

/** The sum of several relays' reports. */
export function mergeParity(reports: readonly ParityReport[]): ParityReport {
  const out: ParityReport = { policies: {}, testRecipients: {}, dropped: 0 };
  for (const r of reports) {
    out.dropped += r.dropped;
    for (const key of ['policies', 'testRecipients'] as const) {
      for (const [k, c] of Object.entries(r[key])) addCounts((out[key][k] ??= emptyCounts()), c);
    }
  }
  return out;
}

/**
 * The 95th percentile of the copy lag, as the upper bound of the bucket it falls in (seconds), or undefined without
 * any delivered pair. Longer than the last bucket: Infinity.
 */
export function lagP95Seconds(lag: readonly number[]): number | undefined {
  const total = lag.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = Math.ceil(total * 0.95);
  let seen = 0;
  for (let i = 0; i < lag.length; i++) {
    seen += lag[i] ?? 0;
    if (seen >= rank) return LAG_BUCKETS_SECONDS[i] ?? Number.POSITIVE_INFINITY;
  }
  return Number.POSITIVE_INFINITY;
}

/** The status.parity of a DeliveryPolicy or TestRecipient (see the CRD schema). */
export interface ParityStatus {
  primaryDelivered: number;
  copiesDelivered: number;
  copiesSuppressed: number;
  copiesPending: number;
  /** "<= 5s", "<= 1h", "> 24h"; absent before the first delivered pair. */
  lagP95?: string;
}

export function formatLagBound(seconds: number): string {
  if (!Number.isFinite(seconds))
    return `> ${formatLagBound(LAG_BUCKETS_SECONDS[LAG_BUCKETS_SECONDS.length - 1]!).slice(3)}`;
  const text =
    seconds % 3600 === 0 ? `${seconds / 3600}h` : seconds % 60 === 0 ? `${seconds / 60}m` : `${seconds}s`;
  return `<= ${text}`;
}

export function parityStatus(c: ParityCounts | undefined): ParityStatus {
  const x = c ?? emptyCounts();
  const p95 = lagP95Seconds(x.lag);
  return {
    primaryDelivered: x.primary,
    copiesDelivered: x.copies,
    copiesSuppressed: SUPPRESS_REASONS.reduce((n, r) => n + (x.suppressed[r] ?? 0), 0),
    copiesPending: x.pending,
    ...(p95 !== undefined ? { lagP95: formatLagBound(p95) } : {}),
  };
}

/** A parity report as `GET /queue/stats` and `mailroute queue stats` show it: status shape plus the reasons. */
export interface ParityView {
  policies: Record<string, ParityStatus & { suppressedBy: Partial<Record<SuppressReason, number>> }>;
  testRecipients: Record<string, ParityStatus & { suppressedBy: Partial<Record<SuppressReason, number>> }>;
}

export function parityView(r: ParityReport): ParityView {
  const view = (t: Record<string, ParityCounts>) =>
    Object.fromEntries(
      Object.entries(t)
        .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
        .map(([k, c]) => [k, { ...parityStatus(c), suppressedBy: { ...c.suppressed } }]),
    );
  return { policies: view(r.policies), testRecipients: view(r.testRecipients) };
}
