// Binding a listener: the bind's error (EADDRINUSE, EACCES) rejects; once it listens, an error of the listener (an
// accept that fails for want of a descriptor, EMFILE or ENFILE, when a connection flood holds them all) goes to
// onError and is never fatal: an 'error' event without a listener would end the process. The relay's HTTP and admin
// listeners and the operator's HTTP listener bind through it.
import type { Server } from 'node:net';

export function listenOn(
  server: Server,
  port: number,
  host: string,
  onError: (err: Error) => void,
): Promise<{ port: number; host: string }> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      server.on('error', onError);
      const a = server.address();
      resolve(typeof a === 'object' && a !== null ? { port: a.port, host: a.address } : { port, host });
    });
  });
}
