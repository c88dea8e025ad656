/**
 * The one error hierarchy of Switchboard. Modules and backend plugins throw
 * these; each surface (Academy routes, VideoSDK routes, A2A proxy, native REST)
 * renders them its own way from `status`, `code` and `message`.
 */
export class AppError extends Error {
  readonly status: number
  readonly code: string
  /** Extra fields a surface may render (e.g. the 410 body of a removed workspace). */
  readonly details?: Record<string, unknown>
  /** Seconds after which the caller may try again (rendered as Retry-After by every surface). */
  readonly retryAfter?: number

  constructor(status: number, code: string, message: string, details?: Record<string, unknown>, retryAfter?: number) {
    super(message)
    this.name = new.target.name
    this.status = status
    this.code = code
    this.details = details
    this.retryAfter = retryAfter
  }
}

/** Malformed or missing input. */
export class BadRequestError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(400, 'BAD_REQUEST', message, details)
  }
}

/** No credentials, or credentials in the wrong form. */
export class UnauthorizedError extends AppError {
  constructor(message = 'Missing required headers.') {
    super(401, 'UNAUTHORIZED', message)
  }
}

/** Credentials that are not (or no longer) valid. */
export class InvalidTokenError extends AppError {
  constructor(message = 'Token expired or revoked.') {
    super(403, 'INVALID_TOKEN', message)
  }
}

/** A valid caller that may not do this. */
export class ForbiddenError extends AppError {
  constructor(message = 'Incorrect permissions') {
    super(403, 'FORBIDDEN', message)
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'Not found') {
    super(404, 'NOT_FOUND', message)
  }
}

export class UnknownMailboxError extends AppError {
  constructor() {
    super(404, 'UNKNOWN_MAILBOX', 'Unknown mailbox ID')
  }
}

export class RequestTimeoutError extends AppError {
  constructor(message = 'Request timeout') {
    super(408, 'REQUEST_TIMEOUT', message)
  }
}

export class ConflictError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(409, 'CONFLICT', message, details)
  }
}

export class GoneError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(410, 'GONE', message, details)
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(413, 'PAYLOAD_TOO_LARGE', message, details)
  }
}

/** Academy's own status for a closed mailbox. */
export class MailboxTerminatedError extends AppError {
  constructor() {
    super(419, 'MAILBOX_TERMINATED', 'Mailbox was closed')
  }
}

/** The store refused a message because it already holds as many queued messages as it may. */
export class ExchangeFullError extends AppError {
  constructor(message: string) {
    super(507, 'EXCHANGE_FULL', message)
  }
}

/** The store is out of room (Redis at its maxmemory, a SQLite database at its size limit or on a full disk): nothing of the write was stored. */
export class StoreFullError extends AppError {
  constructor(message: string) {
    super(507, 'STORE_FULL', message)
  }
}

export class TooManyRequestsError extends AppError {
  constructor(message: string, retryAfter: number) {
    super(429, 'TOO_MANY_REQUESTS', message, undefined, retryAfter)
  }
}

/** A dependency (backend store, upstream agent, worker) cannot be reached now. */
export class UnavailableError extends AppError {
  constructor(message: string, retryAfter = 1, details?: Record<string, unknown>) {
    super(503, 'UNAVAILABLE', message, details, retryAfter)
  }
}

export class GatewayTimeoutError extends AppError {
  constructor(message: string, retryAfter = 1) {
    super(504, 'GATEWAY_TIMEOUT', message, undefined, retryAfter)
  }
}

/** Builds the AppError that stands for an unexpected failure, without leaking its internals. */
export function internalError(): AppError {
  return new AppError(500, 'INTERNAL', 'Internal Server Error')
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError
}
