// What `mailroute route` prints under the legs to say why they are what they are: the policy and its state in force
// (mode, dual scope, where unknown recipients go), and the TestRecipient found for the address (its own, or its
// mailbox's for a subaddress, or none, which is why a TestRecipients-scoped copy is missing). Pure: the facts come
// from routing/resolve.ts explainRoute(), the same lookups the relay's resolve() makes.
import type { RouteExplanation } from '../../routing/resolve.ts';

export function explanationLines(e: RouteExplanation, recipient: string): string[] {
  const lines: string[] = [];
  if (e.policy === undefined) return ['  policy:  none routes this domain'];
  let state = '';
  switch (e.mode) {
    case 'Dual': {
      const d = e.dual;
      state =
        d === undefined
          ? 'Dual'
          : `Dual, scope ${d.scope}, copies' bounces ${d.bounces}${
              d.copyRecipientDomain !== undefined ? `, copies to @${d.copyRecipientDomain}` : ''
            }`;
      break;
    }
    case 'Split':
      state = `Split, unknown recipients: ${e.split?.unknownRecipients ?? 'Secondary'}`;
      break;
    case 'Direct':
      state = 'Direct';
      break;
    case undefined:
      state = 'no mode';
      break;
  }
  lines.push(`  policy:  ${e.policy} (${state})`);
  const tr = e.testRecipient;
  if (tr !== undefined) {
    const whose = tr.byMailbox ? `${tr.address}, the mailbox of ${recipient}` : tr.address;
    lines.push(
      `  test recipient: ${tr.source} for ${whose}${tr.active ? '' : ' (expired: routes like everyone else)'}`,
    );
  } else if (e.mode === 'Dual' && e.dual?.scope === 'TestRecipients') {
    lines.push(
      '  test recipient: none for this address or its mailbox, so no copy (scope TestRecipients copies test recipients only)',
    );
  }
  return lines;
}
