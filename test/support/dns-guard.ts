// Loaded by every vitest project (setupFiles): lookups made in the test process or in the relays and operators it
// spawns (they inherit MAILROUTE_DNS_SERVERS, see cli/dns.ts; a relay resolves every name through it, relay/dns.ts,
// and in-process relays get it from test/relay/relay-harness.ts) go to a closed loopback port, never to the
// machine's resolver, so tests send no traffic beyond 127.0.0.0/8. A test that needs names runs its own responder
// (test/support/dns-server.ts) and passes --dns-servers.
import dns from 'node:dns';

process.env.MAILROUTE_DNS_SERVERS = '127.0.0.1:1';
dns.setServers(['127.0.0.1:1']);
