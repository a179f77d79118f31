import { describe, expect, it } from 'vitest';
import { assertSmtpServerPatched, smtpServerPatchProblems } from './patched.ts';

describe('smtp-server patch self-check', () => {
  it('finds every patched behaviour the relay relies on (greeting delay, enhanced codes, A-labels, line timing, end-of-DATA search)', () => {
    expect(smtpServerPatchProblems()).toEqual([]);
    expect(() => assertSmtpServerPatched()).not.toThrow();
  });
});
