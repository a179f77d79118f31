// The routing schedule: which dated stage of a DeliveryPolicy is in force at an instant, and the next instant at which
// routing changes (a stage ends, a TestRecipient expires). Pure, UTC instants only (ms since the epoch): a wall clock
// time zone, DST or a clock that jumps cannot change the answer, which depends on `now` alone. resolve() (the relay,
// `mailroute route --at`), `mailroute check`, the operator's status and the relay's transition timer all ask here;
// none of them keeps its own idea of the schedule.
//
// A stage is in force from the end of the stage before it (the first: from any time) until its `until`, exclusive:
// at `until` exactly, the next stage (or, after the last, the policy's own fields) is in force. TestRecipient expiry
// follows the same rule: active while now < expiresAt.
//
// What a time is: parseInstant, an RFC 3339 date-time as the CRD's pattern (DATE_TIME) says. The compiler refuses a
// stage or a TestRecipient whose time does not parse (InvalidTime), so a table it wrote holds none; in a table written
// some other way such a time counts as passed (the stage has ended, the TestRecipient has expired), never as "never".
import { DATE_TIME } from './crd-schema.ts';
import type { RoutingTable } from './model.ts';

/** The policy's own fields, in force after the last stage (and always, for a policy without stages). */
export const FINAL_STAGE = 'final';

/**
 * The index of the stage in force at `nowMs` among stages ending at `untilMs` (strictly increasing, as validation
 * ensures): the first stage whose end is after now, or `untilMs.length` (the final state) when every stage has ended.
 */
export function stageIndexAt(untilMs: readonly number[], nowMs: number): number {
  // A handful of stages (at most MAX_STAGES): a scan is the clearest and fastest.
  for (let i = 0; i < untilMs.length; i++) if (nowMs < untilMs[i]!) return i;
  return untilMs.length;
}

export interface StageInForce {
  /** Index into the stages; equal to their number for the final state. */
  index: number;
  /** The stage's name, or FINAL_STAGE. */
  name: string;
  /** RFC 3339 end of the stage in force; absent for the final state. */
  until?: string;
}

/** The stage in force at `now` (see stageIndexAt). A stage whose `until` does not parse has ended (see instant). */
export function stageAt(
  stages: readonly { name: string; until: string }[] | undefined,
  now: Date,
): StageInForce {
  const list = stages ?? [];
  const i = stageIndexAt(
    list.map((s) => instant(s.until)),
    now.getTime(),
  );
  const s = list[i];
  return s === undefined ? { index: i, name: FINAL_STAGE } : { index: i, name: s.name, until: s.until };
}

const DATE_TIME_RE = new RegExp(DATE_TIME);

/**
 * ms since the epoch of an RFC 3339 date-time, or undefined when `text` is not one: the one parser of a time (the
 * CRD's pattern, offline validation, the compiler and the schedule). A text the pattern accepts is a real calendar
 * instant, which Date.parse reads exactly; Date.parse alone would move 2026-02-30 to March 2 and 24:00 to the next day.
 */
export function parseInstant(text: string): number | undefined {
  if (!DATE_TIME_RE.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * ms since the epoch of a stage end or an expiry: +Infinity (never) when there is none, -Infinity (already passed)
 * when it does not parse. The compiler never lets an unparsable one into a table (InvalidTime).
 */
export function instant(rfc3339: string | undefined): number {
  if (rfc3339 === undefined) return Number.POSITIVE_INFINITY;
  return parseInstant(rfc3339) ?? Number.NEGATIVE_INFINITY;
}

/** The earliest of `times` (RFC 3339) that is after `now`, or undefined when none is. */
export function nextInstant(times: Iterable<string | undefined>, now: Date): Date | undefined {
  const n = now.getTime();
  let best = Number.POSITIVE_INFINITY;
  for (const t of times) {
    const ms = instant(t);
    if (ms > n && ms < best) best = ms;
  }
  return best === Number.POSITIVE_INFINITY ? undefined : new Date(best);
}

/** Every instant at which a route of `table` changes by the clock alone: stage ends and TestRecipient expiries. */
function* transitionTimes(table: Pick<RoutingTable, 'domains'>): Generator<string> {
  for (const route of Object.values(table.domains)) {
    for (const s of route.stages ?? []) yield s.until;
    for (const tr of Object.values(route.testRecipients)) if (tr.expiresAt !== undefined) yield tr.expiresAt;
  }
}

/**
 * The next instant after `now` at which `table` routes differently without any change to the table: what the relay
 * arms its transition timer on (through safeDelay; routing/timer.ts). undefined: the table never changes by itself.
 */
export function nextTransition(table: Pick<RoutingTable, 'domains'>, now: Date): Date | undefined {
  return nextInstant(transitionTimes(table), now);
}
