// Which Secrets an authSecretRef may use. Pure; the one rule the operator (its Secret informer's label selector and
// the credentials it copies into mailroute-credentials) and the standalone --manifests source both apply.
//
// A Secret is usable only when it opts in with the label mailroute.io/smtp-auth: "true". Without the opt-in, anyone
// allowed to create a MailDomain could name any Secret of their namespace (a database password they may not read)
// and have the relay send it in AUTH to a server of their choosing: the operator would act as a confused deputy.
// Adding a label needs patch or update on the Secret, and a patch or update response carries the whole Secret, so
// whoever can opt a Secret in could already read it.
//
// One mechanism: the label. The type mailroute.io/smtp-auth is allowed (as are Opaque and kubernetes.io/basic-auth)
// but does not opt in by itself, because one informer cannot select "this label OR this type" and the operator
// watches only opted-in Secrets.

export const SMTP_AUTH_LABEL = 'mailroute.io/smtp-auth';
export const SMTP_AUTH_LABEL_VALUE = 'true';
/** The label selector of the operator's Secret informer. */
export const SMTP_AUTH_SELECTOR = `${SMTP_AUTH_LABEL}=${SMTP_AUTH_LABEL_VALUE}`;

/** What status says about a referenced Secret that is missing or has not opted in: the same words for both. */
export const SECRET_NOT_USABLE = `not found or not permitted (a Secret is used for SMTP AUTH only with the label ${SMTP_AUTH_LABEL}: "${SMTP_AUTH_LABEL_VALUE}")`;

/** Whether a Secret may be used by authSecretRef: it carries the label mailroute.io/smtp-auth: "true". */
export function secretOptedIn(secret: { labels?: Readonly<Record<string, string>> | undefined }): boolean {
  return secret.labels?.[SMTP_AUTH_LABEL] === SMTP_AUTH_LABEL_VALUE;
}
