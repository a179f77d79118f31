// Backscatter risk: a MailDomain without accounts, recipient verification or rejectUnknownRecipients
// accepts mail for any local part. When the primary then refuses an unknown mailbox with 550, the relay sends a DSN to
// the envelope sender, which spam forges: the relay becomes a source of backscatter. `mailroute check` warns about
// such a domain and the operator sets the MailDomain condition BackscatterRisk=True. Pure.

export interface RecipientChecks {
  accounts?:
    Readonly<Record<string, readonly string[]>> | readonly { addresses: readonly string[] }[] | undefined;
  recipientVerification?: unknown;
  rejectUnknownRecipients?: boolean | undefined;
}

const BACKSCATTER_MESSAGE =
  'accepts mail for any local part: with no accounts, no recipientVerification and no rejectUnknownRecipients, mail to a mailbox the primary does not have is accepted, and its 550 sends a DSN to a sender that may be forged (backscatter)';

function hasAccounts(a: RecipientChecks['accounts']): boolean {
  if (a === undefined) return false;
  const lists = Array.isArray(a)
    ? a.map((e: { addresses: readonly string[] }) => e.addresses)
    : Object.values(a);
  return lists.some((l: readonly string[]) => l.length > 0);
}

/** The warning for a domain that can produce backscatter, or undefined. */
export function backscatterRisk(d: RecipientChecks): string | undefined {
  if (hasAccounts(d.accounts) || d.recipientVerification !== undefined || d.rejectUnknownRecipients === true)
    return undefined;
  return BACKSCATTER_MESSAGE;
}
