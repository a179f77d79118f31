// One line about an error, for logs and status messages.

/** The first line of the message; for an ApiException of @kubernetes/client-node, with the Status message from its body. */
export function errMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const status = JSON.parse(body) as { message?: unknown };
      if (typeof status.message === 'string') return `${err.message.split('\n')[0] ?? ''}: ${status.message}`;
    } catch {
      // not JSON: fall through
    }
  }
  return err.message.split('\n')[0] ?? err.message;
}

/** A volume out of bytes or inodes, or the user's quota (ENOSPC, EDQUOT): what space returning fixes. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
