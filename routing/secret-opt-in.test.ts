import { describe, expect, it } from 'vitest';
import { secretOptedIn, SMTP_AUTH_SELECTOR } from './secret-opt-in.ts';

describe('secretOptedIn: only a Secret labelled mailroute.io/smtp-auth: "true" may be used by authSecretRef', () => {
  it.each([
    ['no labels', {}, false],
    ['labels undefined', { labels: undefined }, false],
    ['other labels', { labels: { app: 'db' } }, false],
    ['the label, "true"', { labels: { 'mailroute.io/smtp-auth': 'true' } }, true],
    ['the label, "false"', { labels: { 'mailroute.io/smtp-auth': 'false' } }, false],
    [
      'the label, "True" (values are case-sensitive, as in a label selector)',
      { labels: { 'mailroute.io/smtp-auth': 'True' } },
      false,
    ],
    ['the label, empty', { labels: { 'mailroute.io/smtp-auth': '' } }, false],
    ['a look-alike key', { labels: { 'mailroute.io/smtp-auth ': 'true', 'smtp-auth': 'true' } }, false],
  ] as const)('%s -> %s', (_name, secret, want) => {
    expect(secretOptedIn(secret)).toBe(want);
  });

  it('the informer selector selects exactly what secretOptedIn accepts', () => {
    const [key, value] = SMTP_AUTH_SELECTOR.split('=') as [string, string];
    expect(secretOptedIn({ labels: { [key]: value } })).toBe(true);
  });
});
