// The workloads of the relay benchmark: what smtp-source sends and what the sinks must receive.
// Pure data and arithmetic; run.ts drives them.

export const DELIVERY_MODES = ['Direct', 'Dual', 'Split'] as const;
export type DeliveryMode = (typeof DELIVERY_MODES)[number];

export interface Workload {
  readonly id: string;
  readonly mode: DeliveryMode;
  /** smtp-source -l: payload bytes, headers excluded. */
  readonly sizeBytes: number;
  /** smtp-source -r: recipients per message. */
  readonly recipients: number;
  /** Messages in full mode (20,000 for the 4 KiB loads). */
  readonly fullMessages: number;
  /** Messages in --quick mode (development). */
  readonly quickMessages: number;
  readonly title: string;
}

export const WORKLOADS: readonly Workload[] = Object.freeze([
  {
    id: 'direct-4k',
    mode: 'Direct',
    sizeBytes: 4096,
    recipients: 1,
    fullMessages: 20_000,
    quickMessages: 2_000,
    title: 'direct, 4 KiB, 1 rcpt',
  },
  {
    id: 'dual-4k',
    mode: 'Dual',
    sizeBytes: 4096,
    recipients: 1,
    fullMessages: 20_000,
    quickMessages: 2_000,
    title: 'dual, 4 KiB, 1 rcpt',
  },
  {
    id: 'split-4k',
    mode: 'Split',
    sizeBytes: 4096,
    recipients: 1,
    fullMessages: 20_000,
    quickMessages: 2_000,
    title: 'split, 4 KiB, 1 rcpt',
  },
  {
    id: 'dual-100k',
    mode: 'Dual',
    sizeBytes: 102_400,
    recipients: 1,
    fullMessages: 5_000,
    quickMessages: 500,
    title: 'dual, 100 KiB, 1 rcpt',
  },
  {
    id: 'dual-4k-10rcpt',
    mode: 'Dual',
    sizeBytes: 4096,
    recipients: 10,
    fullMessages: 5_000,
    quickMessages: 500,
    title: 'dual, 4 KiB, 10 rcpts',
  },
]);

export function findWorkload(id: string): Workload | undefined {
  return WORKLOADS.find((w) => w.id === id);
}

/** The recipient domain every system relays, and the domain Postfix's bcc copies (and mailroute's copies) go to. */
export const BENCH_DOMAIN = 'bench.example';
export const COPY_DOMAIN = 'copy.bench.example';
/** Split mode: recipients ending in this local part are known on the primary; the others go to the secondary. */
export const KNOWN_LOCAL = 'known';
export const OTHER_LOCAL = 'other';
export const SENDER = 'bench@sender.example';

/** One smtp-source process: how many sessions and messages, and its base recipient. */
export interface SourcePlan {
  readonly sessions: number;
  readonly messages: number;
  readonly to: string;
}

/**
 * Split sends two equal streams (known / unknown on the primary) so half the recipients go each way;
 * the other modes use one smtp-source.
 */
export function sourcePlans(mode: DeliveryMode, sessions: number, messages: number): SourcePlan[] {
  if (mode !== 'Split') return [{ sessions, messages, to: `user@${BENCH_DOMAIN}` }];
  const s1 = Math.max(1, Math.ceil(sessions / 2));
  const m1 = Math.ceil(messages / 2);
  return [
    { sessions: s1, messages: m1, to: `${KNOWN_LOCAL}@${BENCH_DOMAIN}` },
    { sessions: Math.max(1, sessions - s1), messages: messages - m1, to: `${OTHER_LOCAL}@${BENCH_DOMAIN}` },
  ];
}

/** smtp-source -r N names its recipients LOCAL, 2LOCAL, ... NLOCAL (checked against Postfix 3.7). */
export function sourceRecipients(to: string, count: number): string[] {
  const at = to.indexOf('@');
  const local = to.slice(0, at);
  const domain = to.slice(at + 1);
  return Array.from({ length: count }, (_, i) => (i === 0 ? to : `${i + 1}${local}@${domain}`));
}

/** Recipient legs the two sinks must receive in total for the load to be delivered end to end. */
export function expectedLegs(mode: DeliveryMode | 'Ceiling', messages: number, recipients: number): number {
  switch (mode) {
    case 'Ceiling':
    case 'Direct':
    case 'Split':
      return messages * recipients;
    case 'Dual':
      return 2 * messages * recipients;
  }
}
