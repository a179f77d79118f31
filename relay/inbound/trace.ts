// The relay's own trace: the comment `(mailroute <cluster id>)` after `by <host>` in the Received: header it
// prepends. Pure.
//
// The cluster id names the whole installation, not a pod, so every relay of one cluster recognizes a message any of
// them stamped: `--cluster-id` / MAILROUTE_CLUSTER_ID (the chart sets `<release>.<namespace>` unless
// relay.clusterId is given), standalone the --hostname. A message that comes back carrying it is a forwarding loop
// (554 5.4.6, like Postfix's "mail loops back to myself"); see docs/relay.md "Loops and hop limit".
//
// Only a Received: field whose `by` clause carries the comment counts (the from clause, other fields and the body do
// not), compared case-insensitively and with folding whitespace collapsed, so a downstream server that refolds the
// header still matches and a token of another installation (another id) never does.

/** Cluster ids: a DNS-like name, so the comment needs no quoting and cannot break the header. */
const CLUSTER_ID = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$/;

export function isValidClusterId(id: string): boolean {
  return CLUSTER_ID.test(id);
}

/** The comment that follows `by <hostname>` in the relay's Received: header. */
export function traceComment(clusterId: string): string {
  return `(mailroute ${clusterId})`;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');

/**
 * A test for the value of one Received: field (folds as they came, or already unfolded): does it carry our trace?
 * It compiles a regular expression: make it once per cluster id (the inbound layer does, per relay), not per message.
 */
export function traceMatcher(clusterId: string): (fieldValue: string) => boolean {
  const re = new RegExp(`(?:^|[\\s;)])by\\s+[^\\s();]+\\s+\\(mailroute\\s+${escapeRe(clusterId)}\\)`, 'i');
  return (value) => re.test(value);
}

/**
 * The byte length of the message's first header field when it is a Received: field carrying this trace (the header
 * the relay itself prepended), else 0. `head` is the start of the message (its header block is enough).
 */
export function ownTraceLength(head: Buffer, clusterId: string): number {
  const text = head.toString('latin1');
  if (!/^received:/i.test(text)) return 0;
  // The field ends at the first CRLF not followed by folding whitespace.
  const end = /\r\n(?![ \t])/.exec(text);
  if (!end) return 0;
  const length = end.index + 2;
  const value = text.slice('received:'.length, end.index);
  return traceMatcher(clusterId)(value) ? length : 0;
}
