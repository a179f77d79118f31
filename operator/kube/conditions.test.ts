import { describe, expect, it } from 'vitest';
import { conditionTime, setConditions, type DesiredCondition } from './conditions.ts';

const t0 = new Date('2026-11-28T10:00:00.123Z');
const t1 = new Date('2026-11-28T10:05:00Z');
const ready = (status: 'True' | 'False', reason = 'Ready', message = ''): DesiredCondition => ({
  type: 'Ready',
  status,
  reason,
  message,
});

describe('setConditions', () => {
  it('fills lastTransitionTime (second precision) and observedGeneration on first write', () => {
    const u = setConditions(undefined, [ready('False', 'NoRelays', '0/0 relays programmed')], 3, t0);
    expect(u.changed).toBe(true);
    expect(u.conditions).toEqual([
      {
        type: 'Ready',
        status: 'False',
        reason: 'NoRelays',
        message: '0/0 relays programmed',
        observedGeneration: 3,
        lastTransitionTime: '2026-11-28T10:00:00Z',
      },
    ]);
    expect(u.transitions).toEqual([
      { type: 'Ready', from: undefined, to: 'False', reason: 'NoRelays', message: '0/0 relays programmed' },
    ]);
  });

  const cases: [string, DesiredCondition, number, boolean, string, number][] = [
    // name, desired, generation, changed, lastTransitionTime, transitions
    [
      'identical: no write',
      ready('False', 'NoRelays', '0/0 relays programmed'),
      3,
      false,
      conditionTime(t0),
      0,
    ],
    [
      'message changes: write, keep transition time',
      ready('False', 'NoRelays', '0/1 relays programmed'),
      3,
      true,
      conditionTime(t0),
      0,
    ],
    [
      'status flips: new transition time and a transition',
      ready('True', 'Ready', '1/1 relays programmed'),
      3,
      true,
      conditionTime(t1),
      1,
    ],
    [
      'new generation: write',
      ready('False', 'NoRelays', '0/0 relays programmed'),
      4,
      true,
      conditionTime(t0),
      0,
    ],
  ];
  it.each(cases)('%s', (_name, desired, generation, changed, ltt, transitions) => {
    const first = setConditions(undefined, [ready('False', 'NoRelays', '0/0 relays programmed')], 3, t0);
    const u = setConditions(
      { observedGeneration: 3, conditions: first.conditions },
      [desired],
      generation,
      t1,
    );
    expect(u.changed).toBe(changed);
    expect(u.conditions[0]?.lastTransitionTime).toBe(ltt);
    expect(u.conditions[0]?.observedGeneration).toBe(generation);
    expect(u.transitions).toHaveLength(transitions);
  });

  it('ignores condition types it does not own', () => {
    const u = setConditions(
      {
        observedGeneration: 1,
        conditions: [
          { type: 'ServersReachable', status: 'True', reason: 'x', message: '', lastTransitionTime: 'x' },
        ],
      },
      [ready('True')],
      1,
      t0,
    );
    expect(u.conditions.map((c) => c.type)).toEqual(['Ready']);
  });
});
