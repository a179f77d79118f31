import { describe, expect, it } from 'vitest';
import { RecipientsInFlight, openTransaction, tooManyRecipientsInFlight, type Held } from './in-flight.ts';

/** One step on transaction `t` (by index): it holds `size` recipients now, or it ends. */
type Step = { t: number; hold: number } | { t: number; end: true };

const run = (max: number, txns: number, steps: Step[]): { count: number; full: boolean; held: Held[] } => {
  const f = new RecipientsInFlight(max);
  const held = Array.from({ length: txns }, openTransaction);
  for (const s of steps) {
    const t = held[s.t];
    if (t === undefined) throw new Error(`no transaction ${s.t}`);
    if ('end' in s) f.end(t);
    else f.hold(t, s.hold);
  }
  return { count: f.count, full: f.full, held };
};

describe('recipients in flight', () => {
  it.each<{ name: string; max: number; txns: number; steps: Step[]; count: number; full: boolean }>([
    { name: 'nothing held', max: 3, txns: 1, steps: [], count: 0, full: false },
    {
      name: 'one transaction below the bound',
      max: 3,
      txns: 1,
      steps: [
        { t: 0, hold: 1 },
        { t: 0, hold: 2 },
      ],
      count: 2,
      full: false,
    },
    {
      name: 'two transactions reach the bound together',
      max: 3,
      txns: 2,
      steps: [
        { t: 0, hold: 1 },
        { t: 1, hold: 1 },
        { t: 0, hold: 2 },
      ],
      count: 3,
      full: true,
    },
    {
      name: 'a repeated address (the same size) adds nothing',
      max: 3,
      txns: 1,
      steps: [
        { t: 0, hold: 1 },
        { t: 0, hold: 2 },
        { t: 0, hold: 2 },
      ],
      count: 2,
      full: false,
    },
    {
      name: 'an ended transaction releases all it held',
      max: 3,
      txns: 2,
      steps: [
        { t: 0, hold: 1 },
        { t: 0, hold: 2 },
        { t: 1, hold: 1 },
        { t: 0, end: true },
      ],
      count: 1,
      full: false,
    },
    {
      name: 'ended twice (RSET, then the close) releases once',
      max: 3,
      txns: 2,
      steps: [
        { t: 0, hold: 2 },
        { t: 1, hold: 1 },
        { t: 0, end: true },
        { t: 0, end: true },
      ],
      count: 1,
      full: false,
    },
    {
      name: 'a recipient answered after its transaction ended (session closed mid-callout) is not counted',
      max: 3,
      txns: 1,
      steps: [
        { t: 0, end: true },
        { t: 0, hold: 1 },
        { t: 0, end: true },
      ],
      count: 0,
      full: false,
    },
    {
      name: 'an ended transaction with recipients, then a late one: still nothing held',
      max: 3,
      txns: 1,
      steps: [
        { t: 0, hold: 3 },
        { t: 0, end: true },
        { t: 0, hold: 4 },
      ],
      count: 0,
      full: false,
    },
    {
      name: 'the bound of 1',
      max: 1,
      txns: 1,
      steps: [{ t: 0, hold: 1 }],
      count: 1,
      full: true,
    },
  ])('$name', ({ max, txns, steps, count, full }) => {
    const r = run(max, txns, steps);
    expect(r.count).toBe(count);
    expect(r.full).toBe(full);
    for (const t of r.held) if (t.ended) expect(t.held).toBe(0);
  });

  it('full, then every transaction ended: the whole bound is free again', () => {
    const f = new RecipientsInFlight(4);
    const a = openTransaction();
    const b = openTransaction();
    f.hold(a, 3);
    f.hold(b, 1);
    expect(f.full).toBe(true);
    f.end(a);
    f.end(b);
    f.end(a);
    expect(f.count).toBe(0);
    const c = openTransaction();
    f.hold(c, 4);
    expect(f.full).toBe(true);
  });

  it('the refusal: 452 4.5.3, a tempfail counted as TooManyRecipientsInFlight', () => {
    expect(tooManyRecipientsInFlight()).toEqual({
      verdict: 'tempfail',
      reason: 'TooManyRecipientsInFlight',
      reply: { code: 452, enhanced: '4.5.3', text: 'Too many recipients in flight, try again later' },
    });
  });
});
