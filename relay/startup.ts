// Start-up is all or nothing: every resource runRelay opens (spool, routing source, delivery engine, listeners,
// cluster mode) is registered here as it opens; when a later step fails, what was opened is closed in reverse order
// and the error goes on to the caller, which exits non-zero. The SMTP listener opens last, so a relay that cannot
// serve /metrics, its admin API or its spool never answers 250.

export interface OpenedResources {
  /** Registers how to close a resource that was just opened. */
  opened(name: string, close: () => Promise<unknown> | void): void;
  /** Closes everything registered, newest first; a close that throws is reported and the rest still close. */
  closeAll(onError: (name: string, err: unknown) => void): Promise<void>;
}

export function openedResources(): OpenedResources {
  const stack: { name: string; close: () => Promise<unknown> | void }[] = [];
  return {
    opened(name, close) {
      stack.push({ name, close });
    },
    async closeAll(onError) {
      for (let r = stack.pop(); r !== undefined; r = stack.pop()) {
        try {
          await r.close();
        } catch (err) {
          onError(r.name, err);
        }
      }
    },
  };
}
