// The SMTP envelope of one outgoing transaction, shaped exactly as nodemailer's Mailer shapes it
// (MimeNode.setEnvelope: each address normalized, domains punycoded unless the local part needs SMTPUTF8, duplicate
// recipients dropped), with each address's normalization computed once and remembered.
//
// Exports:
//   OutgoingEnvelope: what nodemailer's SMTP connection reads (from: false is the null sender <>).
//   EnvelopeShaper: shape(from, to, size?) -> a fresh OutgoingEnvelope per call (nodemailer writes into it);
//     shapeEach(from, to): the same, with the addresses each recipient became (the relay's own client, smtp-out/,
//     maps each reply back to the recipient it came from); recipient(addr): one address shaped.
//
// Why: setEnvelope parses every address with nodemailer's address parser and IDNA mapper on every call, about 3 %
// of the relay's main thread under the dual 4 KiB load (docs/perf.md). The result depends on the address alone, so
// it is remembered per address, in a bounded map that is emptied when full. envelope.test.ts checks shape() against
// setEnvelope itself on random address lists (IDN, case, duplicates, quoted and malformed local parts).
import MimeNode from 'nodemailer/lib/mime-node';

export interface OutgoingEnvelope {
  from: string | false;
  to: string[];
  size?: number;
}

/** Distinct addresses remembered; beyond this the map starts again (a flood of new addresses costs what it did). */
const DEFAULT_MAX = 10_000;

export class EnvelopeShaper {
  private readonly node = new MimeNode('message/rfc822', { baseBoundary: 'mailroute' });
  private readonly senders = new Map<string, string | false>();
  private readonly recipients = new Map<string, readonly string[]>();
  private readonly max: number;

  constructor(max: number = DEFAULT_MAX) {
    this.max = Math.max(1, max);
  }

  shape(from: string, to: readonly string[], size?: number): OutgoingEnvelope {
    const { from: sender, to: list } = this.shapeEach(from, to);
    return { from: sender, to: list, ...(size ? { size } : {}) };
  }

  /**
   * shape()'s sender and recipients, and for each recipient of `to` (same order) the envelope addresses it became:
   * a client that reports per recipient maps its replies back through them (smtp-out/pool.ts).
   */
  shapeEach(
    from: string,
    to: readonly string[],
  ): { from: string | false; to: string[]; byRecipient: (readonly string[])[] } {
    const seen = new Set<string>();
    const list: string[] = [];
    const byRecipient = to.map((r) => {
      const shaped = this.recipient(r);
      for (const a of shaped) {
        if (!seen.has(a)) {
          seen.add(a);
          list.push(a);
        }
      }
      return shaped;
    });
    return { from: this.sender(from), to: list, byRecipient };
  }

  /** The sender as shape() puts it in the envelope (false: the null sender <>). */
  private sender(addr: string): string | false {
    const known = this.senders.get(addr);
    if (known !== undefined) return known;
    const shaped = this.node.setEnvelope({ from: addr }).getEnvelope().from;
    remember(this.senders, addr, shaped, this.max);
    return shaped;
  }

  /** The envelope addresses shape() makes of one recipient (usually one; none for an address it cannot parse). */
  recipient(addr: string): readonly string[] {
    const known = this.recipients.get(addr);
    if (known !== undefined) return known;
    const shaped = [...this.node.setEnvelope({ to: [addr] }).getEnvelope().to];
    remember(this.recipients, addr, shaped, this.max);
    return shaped;
  }
}

function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  if (map.size >= max) map.clear();
  map.set(key, value);
}
