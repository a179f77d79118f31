// Bodies held in memory that SMTP's DATA can send as they are: every line ends in CRLF and no line starts with ".".
// The spool marks the in-memory copy of a body whose writer vouched for it (accept's `wireReady`: the inbound content
// scan knows, relay/inbound/data.ts); the delivery client then skips its own scan of those bytes and sends them with
// the final dot line (relay/delivery/smtp-out/body.ts). A body nobody vouched for is scanned and encoded as before.
// The buffers are never changed after the accept, so the mark stays true for as long as the buffer lives.
//
// Exports: markWireReady(buf), isWireReady(buf).
const ready = new WeakSet<Buffer>();

export function markWireReady(body: Buffer): void {
  ready.add(body);
}

export function isWireReady(body: Buffer): boolean {
  return ready.has(body);
}
