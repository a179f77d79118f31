// smtp-server's options as relay/inbound/server.ts sets them (no TLS, no greeting delay), for the benchmarks that run
// smtp-server without the relay around it: the floor's inbound (floor-relay.ts --with smtp-server) and
// inbound-alone.ts.
import type { SMTPServerOptions } from 'smtp-server';

export function relayLikeSmtpServerOptions(name: string): SMTPServerOptions {
  return {
    name,
    banner: 'mailroute',
    size: 50 * 1024 * 1024,
    maxRecipients: 1000,
    socketTimeout: 300_000,
    closeTimeout: 1000,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideDSN: true,
    hideREQUIRETLS: true,
    disableReverseLookup: true,
    logger: false,
    decodePunycode: false,
    greetingDelay: () => 0,
  };
}
