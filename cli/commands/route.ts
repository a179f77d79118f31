// mailroute route -f PATH... --to ADDRESS [--at TIME] [--verified exists|absent|unknown] [-o json]
// Explains the delivery plan of one recipient, exactly as the relay would compute it. Where the relay would make a
// recipient-verification callout, it says which server would be asked about which address (the one the leg
// carries: after copyRecipientDomain) and takes the answer from --verified. It never makes the callout itself: the
// command is offline (no network, no Secrets), and an answer given on the command line can be any of the three.
import { parseAddress } from '../../routing/address.ts';
import type { MailboxFact } from '../../routing/model.ts';
import { stageAt, type StageInForce } from '../../routing/schedule.ts';
import {
  buildIndex,
  explainRoute,
  planToJson,
  resolve,
  softBounceFor,
  verificationNeeded,
  type PlanJson,
  type RouteExplanation,
} from '../../routing/resolve.ts';
import { explanationLines } from './route-explain.ts';
import { loadAndCompile } from '../../lib/manifests.ts';
import {
  fileFlag,
  filesFrom,
  guard,
  limitFlags,
  limitsFrom,
  parseFlags,
  UsageError,
} from './offline-common.ts';

const USAGE =
  'usage: mailroute route -f PATH... --to ADDRESS [--at TIME] [--verified exists|absent|unknown] [-o json|text]\n';

const FACTS: readonly MailboxFact[] = ['exists', 'absent', 'unknown'];

export async function run(argv: string[]): Promise<number> {
  return guard('route', USAGE, async () => {
    const { values } = parseFlags(
      argv,
      {
        ...fileFlag,
        ...limitFlags,
        to: { type: 'string' },
        at: { type: 'string' },
        verified: { type: 'string' },
        output: { type: 'string', short: 'o', default: 'text' },
        help: { type: 'boolean', short: 'h' },
      },
      'route',
    );
    if (values.help === true) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (values.to === undefined) throw new UsageError('mailroute route: --to ADDRESS is required');
    if (values.output !== 'json' && values.output !== 'text')
      throw new UsageError(`mailroute route: -o must be json or text`);
    const now = values.at === undefined ? new Date() : new Date(values.at);
    if (Number.isNaN(now.getTime()))
      throw new UsageError(`mailroute route: --at: not a date-time: ${values.at}`);
    const verifiedFlag = values.verified;
    if (verifiedFlag !== undefined && !(FACTS as readonly string[]).includes(verifiedFlag)) {
      throw new UsageError('mailroute route: --verified must be exists, absent or unknown');
    }
    const { result, errorLines, issueLines } = await loadAndCompile(
      filesFrom(values, 'route'),
      limitsFrom(values, 'route'),
    );
    if (errorLines.length > 0) {
      process.stderr.write(errorLines.map((l) => `${l}\n`).join(''));
      return 1;
    }
    for (const l of issueLines) process.stderr.write(`issue (left out of the table): ${l}\n`);
    const fact = verifiedFlag as MailboxFact | undefined;
    const index = buildIndex(result.table);
    const asked = verificationNeeded(index, values.to, { now });
    const plan = resolve(index, values.to, {
      now,
      ...(fact !== undefined && asked !== undefined
        ? {
            verified: (server: string, address: string): MailboxFact =>
              server === asked.server && address === asked.address ? fact : 'unknown',
          }
        : {}),
    });
    // The stage in force at --at (or now), when the recipient's policy has dated stages: the same stageAt() resolve() uses.
    // the domain as resolve() parses it (a U-label --to finds its A-label)
    const parsedTo = parseAddress(values.to);
    const stages = parsedTo.ok ? result.table.domains[parsedTo.domain]?.stages : undefined;
    const stage = stages === undefined ? undefined : stageAt(stages, now);
    // softBounce in force at --at: the relay's 5xx from a server on these legs is retried, not bounced
    const softBounce = softBounceFor(index, values.to, now);
    // why: the policy and its state in force, the TestRecipient found (routing/resolve.ts explainRoute)
    const why = explainRoute(index, values.to, now);
    const json: PlanJson & {
      why?: RouteExplanation;
      verification?: { server: string; address: string; answer: MailboxFact | null };
      stage?: Omit<StageInForce, 'index'>;
      softBounce?: true;
    } = {
      ...planToJson(plan),
      ...(why !== undefined ? { why } : {}),
      ...(softBounce ? { softBounce: true as const } : {}),
      ...(stage !== undefined
        ? { stage: { name: stage.name, ...(stage.until !== undefined ? { until: stage.until } : {}) } }
        : {}),
      ...(asked !== undefined
        ? { verification: { server: asked.server, address: asked.address, answer: fact ?? null } }
        : {}),
    };
    if (values.output === 'json') {
      process.stdout.write(`${JSON.stringify(json)}\n`);
      return 0;
    }
    const lines = [`${json.recipient}: ${json.verdict} (${json.reply})`];
    for (const l of plan.legs) {
      const where = l.server.mx
        ? `MX of ${l.server.host}, port ${l.server.port}`
        : `${l.server.host}:${l.server.port}`;
      // The leg of record is named as such: its failure is the one the sender hears about.
      const record = l.role === 'primary' ? '; mailbox of record' : '';
      lines.push(
        `  ${l.role.padEnd(8)} ${l.server.name} (${where}) -> ${l.recipient} (bounces: ${l.bounces}${record})`,
      );
    }
    if (why !== undefined) lines.push(...explanationLines(why, json.recipient));
    if (json.stage !== undefined) {
      lines.push(
        `  stage:   ${json.stage.name} at ${now.toISOString()}${json.stage.until !== undefined ? `, until ${json.stage.until}` : " (the policy's own fields; every stage has ended)"}`,
      );
    }
    if (json.softBounce === true) {
      lines.push(
        '  softBounce: on: a 5xx from a server is retried until the queue lifetime ends (no bounce before), and 550 at RCPT is 450',
      );
    }
    if (json.verification !== undefined) {
      const v = json.verification;
      lines.push(
        `  verification: the relay asks ${v.server} about ${v.address} (RCPT TO callout); answer: ${
          v.answer ?? 'not given (--verified exists|absent|unknown), taken as unknown'
        }`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  });
}
