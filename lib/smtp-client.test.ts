import { describe, expect, it } from 'vitest';
import { DEFAULT_TIMEOUTS, plaintextAuthRefusal, smtpClientOptions } from './smtp-client.ts';

describe('smtpClientOptions (shared by delivery and the verification callout)', () => {
  const settings = { hostname: 'relay.example', timeouts: DEFAULT_TIMEOUTS };
  it.each([
    ['None', { secure: false, ignoreTLS: true }],
    ['Opportunistic', { secure: false, opportunisticTLS: true, tls: { rejectUnauthorized: false } }],
    ['Required', { secure: false, requireTLS: true, tls: { rejectUnauthorized: false } }],
    [
      'RequiredVerify',
      { secure: false, requireTLS: true, tls: { rejectUnauthorized: true, servername: 'mx.example' } },
    ],
    ['Implicit', { secure: true, tls: { rejectUnauthorized: false } }],
  ] as const)('tls %s', (tls, want) => {
    const o = smtpClientOptions({ host: 'mx.example', port: 465, tls }, settings);
    expect(o).toMatchObject({ host: 'mx.example', port: 465, name: 'relay.example', ...want });
    expect(o).not.toHaveProperty('auth');
  });
  it('RequiredVerify to an IP address sends no SNI name (RFC 6066) but still verifies', () => {
    const o = smtpClientOptions({ host: '127.0.0.1', port: 25, tls: 'RequiredVerify' }, settings);
    expect(o.tls).toEqual({ rejectUnauthorized: true });
  });
  it('carries the credentials and the timeouts', () => {
    const o = smtpClientOptions(
      { host: 'h', port: 25, tls: 'None', auth: { user: 'u', pass: 'p' } },
      { hostname: 'n', timeouts: { connectionMs: 1, greetingMs: 2, socketMs: 3 } },
    );
    expect(o).toMatchObject({
      auth: { user: 'u', pass: 'p' },
      connectionTimeout: 1,
      greetingTimeout: 2,
      socketTimeout: 3,
    });
  });
  const auth = { user: 'u', pass: 'p' };
  it.each([
    // tls, allowPlaintextAuth, what nodemailer is told
    ['Opportunistic', undefined, { requireTLS: true, tls: { rejectUnauthorized: false } }],
    ['Opportunistic', false, { requireTLS: true, tls: { rejectUnauthorized: false } }],
    ['Opportunistic', true, { opportunisticTLS: true, tls: { rejectUnauthorized: false } }],
    ['Required', undefined, { requireTLS: true }],
    ['None', true, { ignoreTLS: true }],
  ] as const)(
    'with credentials, tls %s and allowPlaintextAuth %s: AUTH only over TLS',
    (tls, allow, want) => {
      const o = smtpClientOptions(
        { host: 'h', port: 25, tls, auth, ...(allow !== undefined ? { allowPlaintextAuth: allow } : {}) },
        settings,
      );
      expect(o).toMatchObject({ secure: false, auth, ...want });
      if ('requireTLS' in want) expect(o.opportunisticTLS).toBeUndefined();
    },
  );
});

describe('plaintextAuthRefusal', () => {
  it.each([
    ['None', true, undefined, true],
    ['None', true, false, true],
    ['None', true, true, false],
    ['None', false, undefined, false],
    ['Opportunistic', true, undefined, false], // STARTTLS becomes required instead (smtpClientOptions)
    ['Required', true, undefined, false],
    ['Implicit', true, undefined, false],
  ] as const)('tls %s, credentials %s, allowPlaintextAuth %s: refused %s', (tls, hasAuth, allow, refused) => {
    const r = plaintextAuthRefusal(
      { tls, ...(allow !== undefined ? { allowPlaintextAuth: allow } : {}) },
      hasAuth,
    );
    expect(r !== undefined).toBe(refused);
    if (refused) expect(r).toMatch(/allowPlaintextAuth: true/);
  });
});
