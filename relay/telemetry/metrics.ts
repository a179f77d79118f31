// The one place that names the relay's Prometheus metrics (docs/design.md §4). No label ever carries a recipient address.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LAG_BUCKETS_SECONDS } from '../../contract/relay-parity.ts';

export interface RelayMetrics {
  registry: Registry;
  messagesAccepted: Counter;
  /** reason: a CamelCase constant (RelayDenied, UnknownRecipient, TooLarge, Loop, BareLineFeed, SpoolError, ...) */
  messagesRejected: Counter<'reason'>;
  /** leg: primary|copy; result: delivered|deferred|soft_bounced (a 5xx kept by softBounce)|failed|suppressed */
  deliveries: Counter<'server' | 'leg' | 'result'>;
  /** state: pending|deferred */
  queueMessages: Gauge<'state'>;
  queueOldestSeconds: Gauge;
  /** Open legs held because their server is no longer in the routing table (see `mailroute queue reroute`). */
  queueLegsUnroutable: Gauge;
  deliveryDuration: Histogram<'server'>;
  /**
   * A server answered again after an outage (no answer, or only 421), and the deferred messages waiting on it were
   * tried at once (relay/delivery/recovery.ts).
   */
  destinationRecoveries: Counter<'server'>;
  routingRevision: Gauge<'revision'>;
  /** policy: namespace/name of a DeliveryPolicy with stages; stage: the stage in force (or final). Value 1. */
  tlsCertificateNotAfter: Gauge;
  policyStage: Gauge<'policy' | 'stage'>;
  /** kind: failed|delayed (a DSN spooled; one with both kinds counts once in each), unroutable (owed, not sent) */
  dsnSent: Counter<'kind'>;
  connections: Gauge;
  /** 1 while the inbound connection table is under stress (3/4 full: the shorter --stress-timeout), else 0. */
  stress: Gauge;
  /** Recipients held in open transactions (--max-recipients-in-flight); read at each scrape from its source. */
  recipientsInFlight: Gauge;
  setRecipientsInFlightSource(source: () => number): void;
  /** Entries in the spool's quarantine/ folder (bounded by age and count). */
  spoolQuarantined: Gauge;
  /** Files moved to quarantine/ since start. */
  spoolQuarantinedTotal: Counter;
  /** Bytes still free on the spool's volume (looked at every 10 s; relay/delivery/shed.ts). */
  spoolFreeBytes: Gauge;
  /** Copy legs ended to keep room for primary mail on a spool volume low on space (relay/delivery/shed.ts). */
  copyLegsShed: Counter;
  /** 1 while delivery is paused because the spool takes no state writes (relay/delivery/storage-hold.ts). */
  deliveryPaused: Gauge;
  /** Messages whose attempt results are kept in memory because the spool could not record them. */
  resultsUnrecorded: Gauge;
  /**
   * The spool's accept log (relay/spool/accept-log.ts): each write's time from its issue to its completion as the relay
   * takes it up, which is what the 250 of a small message waits for (the disk's commit and the event loop's turn).
   */
  spoolLogWriteSeconds: Histogram;
  /** Accept-log writes that failed: their messages were made durable in files of their own instead. */
  spoolLogWriteFailures: Counter;
  /** Messages the accept log holds without a file of their own (filled at each read from setSpoolLogSource). */
  spoolLogMessages: Gauge;
  /**
   * 1 while small messages are made durable in the accept log, 0 while each is fsynced in a file of its own (no log
   * segment could be made: a small or full volume). Filled at each read from setSpoolLogSource.
   */
  spoolLogActive: Gauge;
  /** Sets what fills spoolLogMessages and spoolLogActive when they are read: the spool's accept log (spool.ts). */
  setSpoolLogSource(source: () => SpoolLogStatus): void;
  /** Recipient-verification callouts past the cache; result: exists|absent|unknown (the server's RCPT reply) or
   * failed (no reply: connection, TLS, AUTH), busy (too many waiting), suspended (server failed moments ago). */
  callouts: Counter<'server' | 'result'>;
  /** Verification answers served from the cache; result: exists|absent|unknown. */
  calloutCacheHits: Counter<'server' | 'result'>;
  /** Time of one callout (including the wait for a connection). */
  calloutDuration: Histogram<'server'>;
  /** Callout connections opened (each carries several probes). */
  calloutConnections: Counter<'server'>;
  /**
   * Per recipient-verification server and the domain asked about (a domain, never an address): 1 when the server
   * accepted an address that cannot exist there (a catch-all: its callouts answer every recipient "exists"), 0 when
   * it refused it; no series before an answer, nor once the server has answered no callout `exists` for the domain
   * for its cacheTTL. Filled at each read from setCalloutCatchAllSource (relay/inbound/verify.ts catchAllDetection).
   */
  calloutCatchAll: Gauge<'server' | 'domain'>;
  /** Sets what fills calloutCatchAll when it is read: the verifier's catch-all answers. */
  setCalloutCatchAllSource(source: (gauge: Gauge<'server' | 'domain'>) => void): void;
  /** Connections not made because the destination policy denies every address of the host; use: delivery|callout
   * (delivery includes DSNs). The attempt is deferred (deliveries_total result="deferred"). */
  destinationsDenied: Counter<'use'>;
  /**
   * Parity while dual (relay/telemetry/parity.ts), per DeliveryPolicy and TestRecipient ("namespace/name"; '' for a
   * recipient that is none): final legs; leg primary|copy, result delivered|suppressed, reason (suppressed copies)
   * rejected|expired|bounced|shed.
   */
  parityLegs: Counter<ParityLegLabels>;
  /** Copy legs not final yet. */
  parityCopiesPending: Gauge<'policy' | 'test_recipient'>;
  /** Copy delivered minus its leg of record delivered (same message and recipient), seconds. */
  parityCopyLag: Histogram<'policy' | 'test_recipient'>;
  /** Sets what fills parityLegs and parityCopiesPending when they are read (a scrape): the parity tracker's counts. */
  setParitySource(source: ParitySource): void;
}

type ParityLegLabels = 'policy' | 'test_recipient' | 'leg' | 'result' | 'reason';

/** What the spool's accept log holds and whether it is in use (relay/spool/spool.ts logStatus). */
interface SpoolLogStatus {
  messages: number;
  active: boolean;
}

/** Accept-log write times: a local disk's commit is well under a millisecond, a troubled one takes seconds. */
const LOG_WRITE_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Fills the parity metrics from counts kept elsewhere, at each read (relay/telemetry/parity.ts). */
interface ParitySource {
  /** Resets the counter and sets each label set's total. */
  fillLegs(counter: Counter<ParityLegLabels>): void;
  /** Resets the gauge and sets each label set's value. */
  fillPending(gauge: Gauge<'policy' | 'test_recipient'>): void;
}

export function createRelayMetrics(registry: Registry = new Registry(), defaults = true): RelayMetrics {
  // prom-client's defaults are already named process_* and nodejs_*: the prefix makes them mailroute_process_* and
  // mailroute_nodejs_* (not mailroute_process_process_*).
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'mailroute_' });
  const registers = [registry];
  let parity: ParitySource | undefined;
  let spoolLog: (() => SpoolLogStatus) | undefined;
  let recipientsInFlight: (() => number) | undefined;
  let calloutCatchAll: ((gauge: Gauge<'server' | 'domain'>) => void) | undefined;
  return {
    registry,
    messagesAccepted: new Counter({
      name: 'mailroute_messages_accepted_total',
      help: 'Messages answered 250 after they were durably spooled',
      registers,
    }),
    messagesRejected: new Counter({
      name: 'mailroute_messages_rejected_total',
      help: 'Messages or recipients refused, by reason',
      labelNames: ['reason'],
      registers,
    }),
    deliveries: new Counter({
      name: 'mailroute_deliveries_total',
      help: 'Delivery attempts per server, leg role and result',
      labelNames: ['server', 'leg', 'result'],
      registers,
    }),
    queueMessages: new Gauge({
      name: 'mailroute_queue_messages',
      help: 'Messages in the spool, by state',
      labelNames: ['state'],
      registers,
    }),
    queueOldestSeconds: new Gauge({
      name: 'mailroute_queue_oldest_seconds',
      help: 'Age of the oldest message in the spool',
      // --workers N: the oldest of the workers' spools, not the sum
      aggregator: 'max',
      registers,
    }),
    queueLegsUnroutable: new Gauge({
      name: 'mailroute_queue_legs_unroutable',
      help: 'Queued legs held because their server is no longer in the routing table (mailroute queue reroute re-plans them)',
      registers,
    }),
    deliveryDuration: new Histogram({
      name: 'mailroute_delivery_duration_seconds',
      help: 'Time of one delivery attempt to a server',
      labelNames: ['server'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    destinationRecoveries: new Counter({
      name: 'mailroute_destination_recoveries_total',
      help: 'A server answered again after an outage (no answer, or only 421); the deferred messages waiting on it were tried at once',
      labelNames: ['server'],
      registers,
    }),
    routingRevision: new Gauge({
      name: 'mailroute_routing_revision_info',
      help: 'The routing revision this relay serves (value 1)',
      labelNames: ['revision'],
      aggregator: 'max',
      registers,
    }),
    tlsCertificateNotAfter: new Gauge({
      name: 'mailroute_tls_certificate_not_after_seconds',
      help: 'When the STARTTLS certificate in use expires (Unix seconds); absent without --tls-cert. It moves on when a renewed certificate is read (--tls-reload-interval)',
      aggregator: 'min',
      registers,
    }),
    policyStage: new Gauge({
      name: 'mailroute_policy_stage_info',
      help: 'The stage in force of each DeliveryPolicy with dated stages (value 1; stage "final" after the last one)',
      labelNames: ['policy', 'stage'],
      aggregator: 'max',
      registers,
    }),
    dsnSent: new Counter({
      name: 'mailroute_dsn_total',
      help: 'Delivery status notifications, by kind: failed|delayed sent, unroutable not sent, deferred by the per-recipient-domain rate limit (--dsn-rate)',
      labelNames: ['kind'],
      registers,
    }),
    connections: new Gauge({
      name: 'mailroute_smtp_connections',
      help: 'Open inbound SMTP connections',
      registers,
    }),
    recipientsInFlight: new Gauge({
      name: 'mailroute_smtp_recipients_in_flight',
      help: 'Recipients accepted in SMTP transactions not yet ended, across all sessions (bound: --max-recipients-in-flight)',
      registers,
      collect() {
        const n = recipientsInFlight?.();
        if (n !== undefined) this.set(n);
      },
    }),
    stress: new Gauge({
      name: 'mailroute_smtp_stress',
      help: '1 while 3/4 of --max-connections are in use and idle and command timeouts are --stress-timeout, else 0',
      aggregator: 'max',
      registers,
    }),
    spoolQuarantined: new Gauge({
      name: 'mailroute_spool_quarantined',
      help: 'Entries in the spool quarantine folder (files that could not be read; bounded by age and count)',
      registers,
    }),
    spoolQuarantinedTotal: new Counter({
      name: 'mailroute_spool_quarantined_total',
      help: 'Files moved to the spool quarantine folder since start',
      registers,
    }),
    spoolFreeBytes: new Gauge({
      name: 'mailroute_spool_free_bytes',
      help: "Bytes still free on the spool's volume; under --shed-copies-below, copies of the oldest messages are shed",
      aggregator: 'min',
      registers,
    }),
    copyLegsShed: new Counter({
      name: 'mailroute_copy_legs_shed_total',
      help: 'Copy legs ended undelivered to keep room for primary mail on a spool volume low on space (--shed-copies-below)',
      registers,
    }),
    deliveryPaused: new Gauge({
      name: 'mailroute_delivery_paused',
      help: 'Delivery is paused because the spool takes no state writes (a read-only or failing volume): 1, else 0',
      aggregator: 'max',
      registers,
    }),
    resultsUnrecorded: new Gauge({
      name: 'mailroute_results_unrecorded',
      help: 'Messages whose attempt results the spool could not record, kept in memory and written again (delivered again if the relay stops first)',
      registers,
    }),
    spoolLogWriteSeconds: new Histogram({
      name: 'mailroute_spool_log_write_seconds',
      help: "Accept-log writes, from issue to completion as the relay takes it up: what a small message's 250 waits for",
      buckets: LOG_WRITE_BUCKETS_SECONDS,
      registers,
    }),
    spoolLogWriteFailures: new Counter({
      name: 'mailroute_spool_log_write_failures_total',
      help: 'Accept-log writes that failed (their messages were made durable in files of their own instead)',
      registers,
    }),
    spoolLogMessages: new Gauge({
      name: 'mailroute_spool_log_messages',
      help: 'Messages the accept log holds without a file of their own (durable in the log; a file if still queued at its checkpoint)',
      registers,
      collect() {
        const s = spoolLog?.();
        if (s !== undefined) this.set(s.messages);
      },
    }),
    spoolLogActive: new Gauge({
      name: 'mailroute_spool_log_active',
      help: '1 while small messages are made durable in the accept log, 0 while each is fsynced in a file of its own (no log segment could be made)',
      // with --workers: 0 when any worker's log is out of use
      aggregator: 'min',
      registers,
      collect() {
        const s = spoolLog?.();
        if (s !== undefined) this.set(s.active ? 1 : 0);
      },
    }),
    callouts: new Counter({
      name: 'mailroute_callouts_total',
      help: 'Recipient-verification callouts (not answered from the cache), by server and result (exists, absent, unknown, failed, busy, suspended)',
      labelNames: ['server', 'result'],
      registers,
    }),
    calloutCacheHits: new Counter({
      name: 'mailroute_callout_cache_hits_total',
      help: 'Recipient-verification answers served from the cache, by server and result',
      labelNames: ['server', 'result'],
      registers,
    }),
    calloutDuration: new Histogram({
      name: 'mailroute_callout_duration_seconds',
      help: 'Time of one recipient-verification callout, including the wait for a connection',
      labelNames: ['server'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    calloutConnections: new Counter({
      name: 'mailroute_callout_connections_total',
      help: 'Recipient-verification connections opened (each is reused for several callouts)',
      labelNames: ['server'],
      registers,
    }),
    calloutCatchAll: new Gauge({
      name: 'mailroute_callout_catch_all',
      help: 'A recipient-verification server accepted an address that cannot exist at the domain (a catch-all: callouts cannot tell its mailboxes; in Split every recipient goes to it): 1, refused it: 0. Routing is unchanged; list its mailboxes in the MailDomain spec.accounts and take it out of spec.recipientVerification',
      labelNames: ['server', 'domain'],
      // with --workers: 1 when any worker found it
      aggregator: 'max',
      registers,
      collect() {
        calloutCatchAll?.(this);
      },
    }),
    parityLegs: new Counter({
      name: 'mailroute_parity_legs_total',
      help: 'Final legs per DeliveryPolicy and TestRecipient: leg primary|copy, result delivered|suppressed, reason of a suppressed copy (rejected, expired, bounced, shed)',
      labelNames: ['policy', 'test_recipient', 'leg', 'result', 'reason'],
      registers,
      collect() {
        parity?.fillLegs(this);
      },
    }),
    parityCopiesPending: new Gauge({
      name: 'mailroute_parity_copies_pending',
      help: 'Copy legs not final yet, per DeliveryPolicy and TestRecipient',
      labelNames: ['policy', 'test_recipient'],
      registers,
      collect() {
        parity?.fillPending(this);
      },
    }),
    parityCopyLag: new Histogram({
      name: 'mailroute_parity_copy_lag_seconds',
      help: 'Time from the delivery of a leg of record to the delivery of its copy, per DeliveryPolicy and TestRecipient',
      labelNames: ['policy', 'test_recipient'],
      buckets: [...LAG_BUCKETS_SECONDS],
      registers,
    }),
    destinationsDenied: new Counter({
      name: 'mailroute_destinations_denied_total',
      help: 'Hosts not connected to because the destination policy denies every address they resolve to, by use',
      labelNames: ['use'],
      registers,
    }),
    setParitySource(source) {
      parity = source;
    },
    setSpoolLogSource(source) {
      spoolLog = source;
    },
    setRecipientsInFlightSource(source) {
      recipientsInFlight = source;
    },
    setCalloutCatchAllSource(source) {
      calloutCatchAll = source;
    },
  };
}
