import { describe, expect, it } from 'vitest';
import { senderSpecifiedRouting } from './rcpt.ts';

describe('senderSpecifiedRouting: routing chosen in the local part', () => {
  it.each([
    ['user%other.org@example.com', true],
    ['other.org!user@example.com', true],
    ['"user@other.org"@example.com', true],
    ['a%b%c@example.com', true],
    ['alice@example.com', false],
    ['alice+tag@example.com', false],
    ["o'brien@example.com", false],
    ['josé@example.com', false],
    ['"john smith"@example.com', false],
    // the domain is not the local part: only what comes before the last @ counts
    ['alice@ex%ample.com', false],
  ])('%s -> %s', (address, want) => {
    expect(senderSpecifiedRouting(address)).toBe(want);
  });
});
