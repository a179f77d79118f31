import { describe, expect, it } from 'vitest';
import type { ObjectRef } from '../../../routing/model.ts';
import { objectKey, RevisionHistory } from './controller.ts';

const ref = (kind: ObjectRef['kind'], name: string, generation: number): ObjectRef => ({
  kind,
  namespace: 'ns',
  name,
  generation,
});

describe('RevisionHistory', () => {
  const h = new RevisionHistory(3);
  h.add('r1', [ref('MailDomain', 'd', 1), ref('DeliveryPolicy', 'p', 1), ref('TestRecipient', 't', 1)]);
  h.add('r2', [ref('MailDomain', 'd', 1), ref('DeliveryPolicy', 'p', 2), ref('TestRecipient', 'u', 1)]);

  it('knows the generation of each object in each revision', () => {
    expect(h.generationIn('r1', objectKey('DeliveryPolicy', 'ns', 'p'))).toBe(1);
    expect(h.generationIn('r2', objectKey('DeliveryPolicy', 'ns', 'p'))).toBe(2);
    expect(h.generationIn('r2', objectKey('TestRecipient', 'ns', 't'))).toBeUndefined();
    expect(h.generationIn('nope', objectKey('MailDomain', 'ns', 'd'))).toBeUndefined();
  });

  it('diffs two revisions by object generation (objects in one of them only count)', () => {
    expect([...(h.diff('r1', 'r2') ?? [])].sort()).toEqual([
      'DeliveryPolicy/ns/p',
      'TestRecipient/ns/t',
      'TestRecipient/ns/u',
    ]);
    expect(h.diff('r1', 'r1')?.size).toBe(0);
    expect(h.diff('r1', 'unknown')).toBeUndefined();
  });

  it('keeps only the most recent revisions', () => {
    h.add('r3', []);
    h.add('r1', []); // re-adding refreshes recency
    h.add('r4', []);
    expect([h.has('r1'), h.has('r2'), h.has('r3'), h.has('r4')]).toEqual([true, false, true, true]);
  });
});
